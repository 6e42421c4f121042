"""Ingest: readers for real measurement formats into the canonical latency and flows tables."""
