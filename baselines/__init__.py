"""Baseline models (ZigMa, DiT) built from the shared core in ``usm``; their registry tables."""

BASELINE_MODELS: dict = {}
