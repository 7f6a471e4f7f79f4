"""Shared fixtures: the shape classifiers are trained once per test session, not once per test."""

import pytest


@pytest.fixture(scope="session")
def classifier_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("classifiers")


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
