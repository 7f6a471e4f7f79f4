"""Shared fixtures: what the tests compute once (shape classifiers, FLOP conventions) is kept between sessions."""

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def classifier_cache():
    """Where the tests' shape classifiers live: kept between test sessions, in a folder named after the
    digest of the code that trains them (``usm/data``, the metrics) and the torch release, so a change
    to either trains them again. ``$USM_TEST_CACHE`` moves it (default ``~/.cache/usm-bench-tests``)."""
    return kept_cache("classifiers", "metrics")


@pytest.fixture
def no_debugger(monkeypatch):
    """submitit's debug executor opens (i)pdb on a failed job; tests have no terminal for it."""
    import pdb
    import sys
    import types

    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "ipdb", types.SimpleNamespace(post_mortem=lambda *a, **k: None))


def kept_cache(kind: str, scope: str) -> Path:
    """``$USM_TEST_CACHE/<kind>-<digest of the code in scope>-torch<release>/`` (default root
    ``~/.cache/usm-bench-tests``): what the tests compute once and keep between sessions, which a
    change to that code or to torch computes again."""
    import torch

    from usm.provenance import code_digest

    root = Path(os.environ.get("USM_TEST_CACHE", Path.home() / ".cache" / "usm-bench-tests"))
    path = root / f"{kind}-{code_digest(scope)}-torch{torch.__version__}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def shared_classifiers(classifier_cache, monkeypatch):
    import analysis.metrics.shape_classifier as shape_classifier

    monkeypatch.setattr(shape_classifier, "classifier_dir", lambda: classifier_cache)


@pytest.fixture(scope="session")
def conventions_cache():
    """The FLOP conventions of the paper's two models (two real B/1 forwards, about 25 s), kept like
    the classifiers under the digest of the code they count (the ``flops`` records' scope)."""
    return kept_cache("conventions", "flops")


@pytest.fixture(autouse=True)
def shared_conventions(conventions_cache, monkeypatch):
    import analysis.metrics.flop_conventions as flop_conventions

    computed = flop_conventions.conventions

    def cached(name: str, text: bool = False) -> dict:
        path = conventions_cache / f"{name.replace('/', '_')}-{'text' if text else 'uncond'}.json"
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.tmp")  # two test sessions at once write apart
            partial.write_text(json.dumps(computed(name, text)))
            partial.replace(path)
        return json.loads(path.read_text())

    monkeypatch.setattr(flop_conventions, "conventions", cached)
