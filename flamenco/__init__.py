"""Flamenco command line and environment defaults."""
