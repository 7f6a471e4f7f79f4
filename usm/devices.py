"""Which device work runs on unless told, and what a record calls it.

    >>> default_device() in ("cuda", "cpu")
    True
    >>> isinstance(device_name(torch.device("cpu")), str)
    True
"""

from __future__ import annotations

import platform

import torch


def default_device() -> str:
    """The GPU when there is one, else the CPU: the trainer, the sampler, the studies and the checks
    all decide this way."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (``/proc/cpuinfo``), for records of costs."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"
