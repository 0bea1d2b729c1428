"""What acts: environments, scripted (offline) agents and the conversation loop."""
