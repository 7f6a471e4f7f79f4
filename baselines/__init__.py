"""Baseline models (ZigMa, DiT) built from the shared core in ``usm``.

Each module ends with its registry table (``ZIGMA_MODELS``, ``DIT_MODELS``), announced to
``usm.models.registry`` through the ``usm_bench.models`` entry points in ``pyproject.toml``.
"""
