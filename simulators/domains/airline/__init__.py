"""The built-in airline domain: flights, reservations, baggage, fare rules and compensation."""

from simulators.domains.airline.env import AirlineEnv

__all__ = ["AirlineEnv"]
