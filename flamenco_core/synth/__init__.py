"""Seeded generators of benchmark data with known ground truth."""
