"""Prefect flows, the versioned store and the command line."""
