"""The Frechet distance between Gaussians, written once: for FID's check and the shape classifier.

    >>> import numpy as np
    >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)), 6)
    2.0
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, ridge: float = 0.0) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) for Gaussians N(mu1, S1), N(mu2, S2).

    ``ridge`` is added to both covariances first (features with dead units give singular ones);
    without it a singular product is regularised by ``eps`` only when its square root fails, as
    the reference FID code does."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if ridge:
        sigma1, sigma2 = sigma1 + ridge * np.eye(len(mu1)), sigma2 + ridge * np.eye(len(mu2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():  # singular product: regularise both covariances
            offset = np.eye(len(mu1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(np.real(covmean)))


def fitted_frechet(a: np.ndarray, b: np.ndarray, ridge: float = 1e-6) -> float:
    """The Frechet distance of Gaussians fitted to two feature sets (rows are samples)."""
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False), ridge=ridge)
