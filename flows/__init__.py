"""Prefect flows composing the tasks into Flamenco's pipelines."""
