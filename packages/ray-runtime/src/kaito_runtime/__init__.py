"""Kaito Ray runtime: tuning and serving inside Ray."""

__version__ = "0.1.0"
