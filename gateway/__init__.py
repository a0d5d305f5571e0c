"""Webhook subscription gateway, wire-compatible with the ADS Platform webhook API."""

__version__ = "0.1.0"
