"""Baseline models (ZigMa, DiT) built from the shared core in ``usm``; their registry tables."""

from baselines.dit import DIT_MODELS
from baselines.zigma import ZIGMA_MODELS

BASELINE_MODELS = {**ZIGMA_MODELS, **DIT_MODELS}
