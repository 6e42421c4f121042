"""Preprocessing: statistics profiles, and (later issues) modality, oversampling, features, splits."""

from flamenco_core.preprocess.profile import PROFILE_STATS, profile

__all__ = ["PROFILE_STATS", "profile"]
