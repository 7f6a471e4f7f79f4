"""Model definitions of the usm package (baselines live in ``baselines/``)."""

from usm.models.usm import USM

__all__ = ["USM"]
