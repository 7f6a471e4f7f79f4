"""The quality metrics of a study and their calibration: the shape classifier, the floor and the ceiling."""

import json

import numpy as np
import pytest

from analysis.metrics.quality import calibration, quality, reference_images
from analysis.metrics.shape_classifier import load_classifier, shape_metrics
from usm.data.shapes import load_shapes, render_shapes


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def test_gray_shapes_are_drawn_at_16_px_with_one_channel():
    images, labels = render_shapes(8, seed=0, size=16, gray=True)
    assert images.shape == (8, 16, 16, 1) and images.dtype == np.uint8
    colour, _ = render_shapes(8, seed=0, size=16)
    assert (labels == render_shapes(8, seed=0, size=16)[1]).all() and colour.shape == (8, 16, 16, 3)
    assert reference_images("shapes-gray", 16, 5).shape == (5, 16, 16, 1)


def test_classifier_knows_the_shapes_and_refuses_noise():
    model, record = load_classifier("shapes-gray", 16)
    assert record["held_out_accuracy"] > 0.97  # 1,024 images it never saw
    images, _ = load_shapes(size=16, gray=True)
    real = shape_metrics(images[:128], images[128:256], "shapes-gray", 16)
    assert real["recognisable"] > 0.9 and real["class_coverage"] > 0.95
    noise = ((np.random.default_rng(0).standard_normal((128, 16, 16, 1)).clip(-1, 1) + 1) * 127.5).astype(np.uint8)
    fake = shape_metrics(images[:128], noise, "shapes-gray", 16)
    assert fake["recognisable"] < 0.1 and fake["shape_fd"] > 10 * real["shape_fd"]
    blurred = images[128:256].astype(float).reshape(128, 4, 4, 4, 4, 1).mean((2, 4), keepdims=True)
    blurred = np.broadcast_to(blurred, (128, 4, 4, 4, 4, 1)).reshape(128, 16, 16, 1).astype(np.uint8)
    assert shape_metrics(images[:128], blurred, "shapes-gray", 16)["recognisable"] < real["recognisable"] - 0.3


def test_calibration_orders_floor_below_ceiling_and_is_cached(tmp_path):
    record = calibration("shapes-gray", 16, 64)
    floor, ceiling = record["data"], record["noise"]
    assert floor["swd"] < ceiling["swd"] / 3 and floor["shape_fd"] < ceiling["shape_fd"] / 10
    assert floor["recognisable"] > ceiling["recognisable"]
    cached = list((tmp_path / "cache" / "calibration").glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == record


def test_quality_of_a_folder_dataset_is_swd_and_pixel_knn(tmp_path):
    from usm.data.shapes import export_folder

    folder = export_folder(tmp_path / "folder", count=20)
    images = reference_images(str(folder), 32, 8)
    scores = quality(images, images[::-1].copy(), str(folder), 32)
    assert set(scores) == {"swd", "precision", "recall", "density", "coverage"}
    assert scores["precision"] == 1.0  # training images lie on the training manifold
    folder = export_folder(tmp_path / "small", count=16)
    assert calibration(str(folder), 32, 8)["data"] is not None and calibration(str(folder), 32, 16)["data"] is None


def test_a_folders_calibration_is_keyed_by_its_images_not_its_path(tmp_path):
    """A folder whose images changed under the same name is calibrated again; a copy elsewhere
    reuses the calibration of the same images."""
    import shutil

    from PIL import Image

    from usm.data.shapes import export_folder

    folder = export_folder(tmp_path / "folder", count=16)
    first = calibration(str(folder), 32, 8)
    cache = tmp_path / "cache" / "calibration"
    assert len(list(cache.glob("folder-*.json"))) == 1
    copy = shutil.copytree(folder, tmp_path / "copy", copy_function=shutil.copy2)  # same names, sizes, times
    assert calibration(str(copy), 32, 8) == first and len(list(cache.glob("folder-*.json"))) == 1
    victim = sorted(folder.rglob("*.png"))[0]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(victim)  # a black image where a shape was
    changed = calibration(str(folder), 32, 8)
    assert len(list(cache.glob("folder-*.json"))) == 2 and changed["noise"] != first["noise"]


@pytest.mark.slow
def test_a_damaged_calibration_cache_is_computed_again_with_a_warning(tmp_path, caplog):
    record = calibration("shapes-gray", 16, 64)
    (cached,) = (tmp_path / "cache" / "calibration").glob("*.json")
    cached.write_text(cached.read_text()[:40])  # cut short
    with caplog.at_level("WARNING"):
        assert calibration("shapes-gray", 16, 64) == record
    assert f"computing {cached} again: it is damaged" in caplog.text
    assert json.loads(cached.read_text()) == record
