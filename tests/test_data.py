"""Training data: the embedded dataset, image folders and their errors, batch order, VAE latents."""

import time

import numpy as np
import pytest
import torch
from PIL import Image

from usm.data import shapes
from usm.data.datasets import StepBatches, open_dataset
from usm.data.folder import DataError, center_crop_arr, scan_folder


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def test_shapes_are_deterministic_labelled_and_cached(tmp_path):
    a, la = shapes.render_shapes(16, seed=3)
    b, lb = shapes.render_shapes(16, seed=3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, shapes.render_shapes(16, seed=4)[0])
    images, labels = shapes.load_shapes(count=32)
    cached = next((tmp_path / "cache").glob("shapes-*.npz"))
    stamp = cached.stat().st_mtime_ns
    images2, _ = shapes.load_shapes(count=32)
    assert cached.stat().st_mtime_ns == stamp and np.array_equal(images, images2)  # read back, not redrawn
    assert images.shape == (32, 32, 32, 3) and set(labels.tolist()) <= set(range(len(shapes.CLASSES)))


def test_shape_classes_differ_in_content():
    """The label is the shape: mean masks of two classes differ clearly."""
    images, labels = shapes.render_shapes(400, seed=0)
    foreground = (np.abs(images.astype(int) - images[:, :1, :1].astype(int)).sum(-1) > 30).mean(axis=(1, 2))
    by_class = [foreground[labels == k].mean() for k in range(4)]
    assert max(by_class) - min(by_class) > 0.05  # e.g. rings cover less than squares


def write_png(path, size=(40, 36), colour=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_class_subfolders_give_labels_recursively(tmp_path):
    for name in ("cat/a.png", "cat/deep/b.jpg", "dog/c.png"):
        write_png(tmp_path / name)
    files, labels, classes, skipped = scan_folder(tmp_path, 32)
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 0, 1] and skipped == 0
    dataset = open_dataset(str(tmp_path), 32)
    item = dataset[(2, True)]
    assert item["x"].shape == (3, 32, 32) and item["label"] == 1
    assert -1 <= item["x"].min() and item["x"].max() <= 1


def test_flat_folder_has_no_classes(tmp_path):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    assert open_dataset(str(tmp_path), 32).num_classes == 0


def test_flip_mirrors_the_image(tmp_path):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:, :8] = 255
    Image.fromarray(image).save(tmp_path / "a.png")
    dataset = open_dataset(str(tmp_path), 32)
    assert torch.equal(dataset[(0, True)]["x"], dataset[(0, False)]["x"].flip(-1))


def test_center_crop_is_adm_style():
    out = center_crop_arr(Image.new("RGB", (512, 256), (1, 2, 3)), 64)
    assert out.shape == (64, 64, 3) and out[0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "holds no images"),
])
def test_missing_or_empty_folder(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=message):
        open_dataset(str(root), 32)


def test_bad_files_stop_the_run_or_are_skipped_and_counted(tmp_path):
    write_png(tmp_path / "good.png")
    write_png(tmp_path / "tiny.png", size=(16, 16))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    expected = r"(?s)2 of 3 files .*broken.png: unreadable.*tiny.png: 16x16 is smaller.*--skip-bad-images"
    with pytest.raises(DataError, match=expected):
        open_dataset(str(tmp_path), 32)
    dataset = open_dataset(str(tmp_path), 32, skip_bad=True)
    assert len(dataset) == 1 and dataset.skipped == 2


def test_step_batches_are_stateless_disjoint_across_ranks_and_cover_an_epoch():
    ranks = [StepBatches(num_items=24, batch_size=3, seed=5, world_size=2, rank=r) for r in range(2)]
    epoch = [i for step in range(4) for r in ranks for i, _ in r.batch(step)]
    assert sorted(epoch) == list(range(24))  # 4 steps x 2 ranks x 3 = one epoch, no repeats
    fresh = StepBatches(num_items=24, batch_size=3, seed=5, world_size=2, rank=1)
    assert fresh.batch(6) == ranks[1].batch(6)  # any step, in any order, from nothing
    assert StepBatches(24, 3, seed=6).batch(0) != StepBatches(24, 3, seed=5).batch(0)
    sampler = fresh.sampler(2, 5)
    assert len(sampler) == 3 and list(sampler) == [fresh.batch(s) for s in (2, 3, 4)]
    with pytest.raises(DataError, match="lower --batch-size"):
        StepBatches(num_items=5, batch_size=4, seed=0, world_size=2)


def test_text_context_rows_must_match_images(tmp_path):
    write_png(tmp_path / "img" / "a.png")
    write_png(tmp_path / "img" / "b.png")
    np.save(tmp_path / "ctx.npy", np.ones((2, 5, 7), dtype=np.float32))
    dataset = open_dataset(str(tmp_path / "img"), 32, context=str(tmp_path / "ctx.npy"))
    assert dataset[(1, False)]["context"].shape == (5, 7)
    np.save(tmp_path / "bad.npy", np.ones((3, 5, 7), dtype=np.float32))
    with pytest.raises(DataError, match="3 rows but the dataset has 2 images"):
        open_dataset(str(tmp_path / "img"), 32, context=str(tmp_path / "bad.npy"))
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "img"), 32, context=str(tmp_path / "nope.npy"))


def test_missing_vae_fails_fast_with_instructions(monkeypatch, tmp_path):
    from usm.data.latents import VAEUnavailable, load_vae

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(VAEUnavailable, match=r"stabilityai/sd-vae-ft-ema.*huggingface-cli download"):
        load_vae("sd-vae-ft-ema")
    assert time.perf_counter() - start < 1.0


def tiny_vae_dir(path, seed=0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                        norm_num_groups=4, sample_size=32)
    vae.save_pretrained(path)
    return path


def test_local_vae_encodes_decodes_and_caches(tmp_path):
    from usm.data.latents import build_latent_cache, decode, encode, latent_shape, load_vae

    vae = load_vae(str(tiny_vae_dir(tmp_path / "vae")))
    assert latent_shape(vae, 32) == (4, 16)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = encode(vae, x)
    assert z.shape == (2, 4, 16, 16) and decode(vae, z).shape == x.shape
    for i in range(3):
        write_png(tmp_path / "img" / f"{i}.png")
    dataset = open_dataset(str(tmp_path / "img"), 32)
    cache = build_latent_cache(dataset, vae, tmp_path / "latents.npy", batch_size=2)
    assert cache.shape == (3, 2, 4, 16, 16)
    torch.testing.assert_close(torch.from_numpy(np.array(cache[1, 1])),
                               encode(vae, dataset[(1, True)]["x"][None])[0], rtol=1e-4, atol=1e-4)
    stamp = (tmp_path / "latents.npy").stat().st_mtime_ns
    build_latent_cache(dataset, vae, tmp_path / "latents.npy")
    assert (tmp_path / "latents.npy").stat().st_mtime_ns == stamp  # reused
    # same folder, same count, one image replaced: the cache is keyed by content, so it is rebuilt
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(tmp_path / "img" / "1.png")
    changed = open_dataset(str(tmp_path / "img"), 32)
    assert changed.fingerprint != dataset.fingerprint
    cache = build_latent_cache(changed, vae, tmp_path / "latents.npy")
    torch.testing.assert_close(torch.from_numpy(np.array(cache[1, 0])),
                               encode(vae, changed[(1, False)]["x"][None])[0], rtol=1e-4, atol=1e-4)
    assert open_dataset(str(tmp_path / "img"), 32).fingerprint == changed.fingerprint  # stable
    with pytest.raises(Exception, match="not a diffusers AutoencoderKL"):
        load_vae(str(tmp_path / "img"))


def test_runs_that_share_a_latent_cache_build_it_once(tmp_path, monkeypatch):
    """Two builders at once (a study's points start together): one encodes, the other waits for it
    and reads the same array; a cache whose description is missing (a builder killed) is rebuilt."""
    import threading

    import usm.data.latents as latents

    vae = latents.load_vae(str(tiny_vae_dir(tmp_path / "vae")))
    for i in range(3):
        write_png(tmp_path / "img" / f"{i}.png")
    dataset = open_dataset(str(tmp_path / "img"), 32)
    calls, encode = [], latents.encode

    def counted(*args):
        calls.append(threading.get_ident())
        return encode(*args)

    monkeypatch.setattr(latents, "encode", counted)
    path, results = tmp_path / "cache" / "latents.npy", []
    threads = [threading.Thread(target=lambda: results.append(np.array(latents.build_latent_cache(dataset, vae, path))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 2 and np.array_equal(results[0], results[1])  # one batch, once
    assert sorted(p.name for p in path.parent.iterdir()) == ["latents.npy", "latents.npy.json", "latents.npy.lock"]
    path.with_name("latents.npy.json").unlink()
    latents.build_latent_cache(dataset, vae, path)
    assert len(calls) == 2  # rebuilt


def test_digits_are_scikit_learns_scaled_with_a_held_out_block():
    from sklearn.datasets import load_digits

    from usm.data.digits import HELD_OUT, digit_images, held_out_digits

    raw = load_digits()
    images, labels = digit_images(8)
    assert images.shape == (1797 - HELD_OUT, 8, 8, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[..., 0], np.round(raw.images[:-HELD_OUT] * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(labels, raw.target[:-HELD_OUT])
    held = held_out_digits(1000, 8)  # asks for more than there are: gets the whole held-out block
    np.testing.assert_array_equal(held[..., 0], np.round(raw.images[-HELD_OUT:] * 255 / 16).astype(np.uint8))
    big, _ = digit_images(16)
    assert big.shape[1:] == (16, 16, 1) and big.max() > 150 and big.min() == 0


def test_every_embedded_dataset_opens_and_a_bad_size_names_the_sizes():
    from usm.data.datasets import open_dataset
    from usm.data.embedded import EMBEDDED

    for name, embedded in EMBEDDED.items():
        dataset = open_dataset(name, 16)
        x = dataset[(0, False)]["x"]
        assert x.shape[1:] == (16, 16) and -1 <= x.min() < x.max() <= 1
        assert dataset.num_classes == len(embedded.classes)
        assert len(embedded.held_out(8, 16)) == 8
    with pytest.raises(DataError, match="digits dataset comes at 8 or 16 or 32 px; got --resolution 20"):
        open_dataset("digits", 20)


def test_sixteen_bit_gray_images_are_scaled_not_clipped_to_white(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as image:
        assert image.mode.startswith("I")  # what PIL makes of a 16-bit PNG
    x = open_dataset(str(tmp_path), 64)[(0, False)]["x"]  # [-1, 1]
    expected = torch.from_numpy(np.round(ramp / 257.0)).float() / 127.5 - 1
    assert x.shape == (3, 64, 64) and x.min() == -1 and x.max() > 0.9
    torch.testing.assert_close(x[0], expected, atol=1 / 127.5, rtol=0)


def test_images_of_every_mode_convert_as_a_viewer_shows_them(tmp_path):
    """Transparency is flattened onto white (convert("RGB") alone brought back the colours hidden under
    transparent pixels), palettes and CMYK through PIL, and float images are refused by name."""
    from usm.data.folder import to_rgb

    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    cases = [(rgba, [[255, 255, 255], [10, 20, 30]]), (palette, [[255, 255, 255], [200, 100, 50]]),
             (Image.new("LA", (1, 1), (100, 0)), [[255, 255, 255]]), (Image.new("L", (1, 1), 7), [[7, 7, 7]]),
             (Image.new("CMYK", (1, 1), (0, 255, 255, 0)), [[255, 0, 0]]), (Image.new("1", (1, 1), 1), [[255] * 3])]
    for image, pixels in cases:
        assert np.asarray(to_rgb(image)).tolist() == [pixels], image.mode
    Image.new("F", (40, 40)).save(tmp_path / "float.tif")
    Image.new("RGB", (40, 40)).save(tmp_path / "fine.png")
    with pytest.raises(DataError, match="float.tif: 32-bit float"):
        open_dataset(str(tmp_path), 32)


def test_caches_are_keyed_by_content_not_by_names_or_times(tmp_path):
    """An image rewritten with the same size and modification time, and another VAE saved under the
    same folder: both make the latent cache stale (the path and mtime stayed, the content did not)."""
    import os

    from usm.data.latents import build_latent_cache, encode, load_vae

    (tmp_path / "img").mkdir()  # BMP: no compression, so another picture of the same shape has the same size
    Image.new("RGB", (40, 36), (200, 10, 10)).save(tmp_path / "img" / "1.bmp")
    target = tmp_path / "img" / "0.bmp"
    Image.new("RGB", (40, 36), (20, 100, 10)).save(target)
    before = open_dataset(str(tmp_path / "img"), 32).fingerprint
    info = target.stat()
    Image.new("RGB", (40, 36), (20, 100, 11)).save(target)  # rewritten: the same size...
    assert target.stat().st_size == info.st_size
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))  # ...and the same modification time
    assert open_dataset(str(tmp_path / "img"), 32).fingerprint != before
    dataset = open_dataset(str(tmp_path / "img"), 32)
    first = load_vae(str(tiny_vae_dir(tmp_path / "vae")))
    build_latent_cache(dataset, first, tmp_path / "latents.npy")
    stamp = (tmp_path / "latents.npy").stat().st_mtime_ns
    second = load_vae(str(tiny_vae_dir(tmp_path / "vae", seed=1)))  # other weights, saved where the first was
    cache = build_latent_cache(dataset, second, tmp_path / "latents.npy")
    assert (tmp_path / "latents.npy").stat().st_mtime_ns != stamp
    torch.testing.assert_close(torch.from_numpy(np.array(cache[0, 0])),
                               encode(second, dataset[(0, False)]["x"][None])[0], rtol=1e-4, atol=1e-4)
