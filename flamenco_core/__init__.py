"""Flamenco core library: pure functions over pandas/numpy/pyarrow.

This package must not import Prefect or MLflow; orchestration lives in ``tasks/`` and ``flows/``.
"""

__version__ = "0.1.0"
