"""Shared fixtures: the shape classifiers are trained once, not once per test."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def classifier_cache():
    """Where the tests' shape classifiers live: kept between test sessions, in a folder named after the
    digest of the code that trains them (``usm/data``, the metrics) and the torch release, so a change
    to either trains them again. ``$USM_TEST_CACHE`` moves it (default ``~/.cache/usm-bench-tests``)."""
    import torch

    from usm.provenance import code_digest

    root = Path(os.environ.get("USM_TEST_CACHE", Path.home() / ".cache" / "usm-bench-tests"))
    path = root / f"classifiers-{code_digest('metrics')}-torch{torch.__version__}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def no_debugger(monkeypatch):
    """submitit's debug executor opens (i)pdb on a failed job; tests have no terminal for it."""
    import pdb
    import sys
    import types

    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "ipdb", types.SimpleNamespace(post_mortem=lambda *a, **k: None))


@pytest.fixture(autouse=True)
def shared_classifiers(classifier_cache, monkeypatch):
    import analysis.metrics.shape_classifier as shape_classifier

    monkeypatch.setattr(shape_classifier, "classifier_dir", lambda: classifier_cache)
