"""Prefect tasks: thin wrappers over flamenco_core (retries, caching, logging; no pipeline logic)."""
