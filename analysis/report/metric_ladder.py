"""Is a quality metric trusted? Score sets whose order is known, and see whether the metric finds it.

    python -m analysis validate-metrics [--data shapes-gray --resolution 16 --count 128]
                                        [--runs results/ablations/recipe-s0 ...] [--out DIR]

    >>> sorted(LADDER)[:3], IMPOSTORS
    (['noise', 'real', 'real+noise0.05'], ('blobs', 'blurred', 'shuffled'))

The sets, each ``count`` images made from real images the model never trained on (the floor set of
``analysis.metrics.quality``):

- **the ladder**, best to worst: real; real plus Gaussian noise of std 0.05, 0.1, 0.2, 0.4 (pixels in
  [0, 1]); pure noise. A metric must rank these in this order.
- **impostors**, images with the data's low-level statistics and none of its content: ``blobs`` (a
  smooth random blob of the shape's own area, position and brightness on the image's own
  background), ``blurred`` (a 4x4 box blur, as far as a shape can be blurred out at 16 px) and
  ``shuffled`` (the image's own pixels in a random order). On a scale where noise is 0 and held-out
  real images are 1, a metric must score every impostor at most ``PASS_IMPOSTOR`` (0.5): a metric
  that gives a shapeless blob more than half of a real image's score measures area, brightness and
  edges more than content -- what the smoke study's samples, blobs, need a metric to see.
- **the checkpoints of one run** (``--runs``): the samples a training run drew at each evaluation
  step (its learning curve, ``samples/curve/`` and ``samples/final``). Quality must not fall as
  training goes on; a metric that ranks them against the steps is measuring something else.

A metric **passes** when its rank correlation (Spearman) with the ladder is at least ``PASS_LADDER``
(0.9: six rungs allow one swap of neighbours, 0.94), no impostor scores above ``PASS_IMPOSTOR``,
and, where checkpoint series are given, its mean rank correlation with the steps is at least
``PASS_CHECKPOINTS`` (0.8: four checkpoints allow one swap of neighbours; a metric that does not
move over a run's checkpoints counts 0 for that run: it cannot rank them). Checkpoints are scored
on as many samples as the fewest of the series has (the learning curve's count). The record
(``validation.json`` and ``.md``) lists every score with its spread over resamplings of the
set, so a reader sees how far apart the rungs are as well as their order. The study tables' headline
(``analysis.metrics.quality.HEADLINE``) holds only metrics that pass; tests/test_metric_ladder.py keeps the
two in agreement.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.metrics.quality import (
    QUALITY_METRICS,
    bootstrap,
    held_out_images,
    noise_images,
    quality,
    reference_images,
)
from usm.provenance import UNRECORDED, stamp, stamp_line

NOISE_LEVELS = (0.05, 0.1, 0.2, 0.4)
LADDER = ("real", *(f"real+noise{s:g}" for s in NOISE_LEVELS), "noise")
IMPOSTORS = ("blobs", "blurred", "shuffled")
PASS_LADDER, PASS_IMPOSTOR, PASS_CHECKPOINTS = 0.9, 0.5, 0.8


def _add_noise(images: np.ndarray, std: float, rng) -> np.ndarray:
    noisy = images / 255.0 + std * rng.standard_normal(images.shape)
    return (noisy.clip(0, 1) * 255).round().astype(np.uint8)


def _blurred(images: np.ndarray, box: int = 4) -> np.ndarray:
    n, h, w, c = images.shape
    means = images.astype(float).reshape(n, h // box, box, w // box, box, c).mean((2, 4), keepdims=True)
    return np.broadcast_to(means, (n, h // box, box, w // box, box, c)).reshape(images.shape).round().astype(np.uint8)


def _shuffled(images: np.ndarray, rng) -> np.ndarray:
    n, h, w, c = images.shape
    flat = images.reshape(n, h * w, c)
    return np.stack([flat[i, rng.permutation(h * w)] for i in range(n)]).reshape(images.shape)


def _blobs(images: np.ndarray, rng, scale: int = 2) -> np.ndarray:
    """For each image: a smooth random blob with the shape's area, centre and brightness on the
    image's background (foreground = pixels above the midpoint of the image's range), drawn at
    ``scale``x and averaged down like the real images' edges."""
    import torch
    import torch.nn.functional as F

    n, h, w, c = images.shape
    out = np.empty_like(images)
    ys, xs = np.mgrid[0:h * scale, 0:w * scale] / scale
    for i, image in enumerate(images.astype(float)):
        gray = image.mean(-1)
        inside = gray > (gray.min() + gray.max()) / 2
        if not inside.any() or inside.all():
            out[i] = images[i]
            continue
        fg, bg = image[inside].mean(0), image[~inside].mean(0)
        cy, cx = np.argwhere(inside).mean(0) + 0.5
        radius = np.sqrt(inside.sum() / np.pi)
        coarse = torch.from_numpy(rng.standard_normal((1, 1, 4, 4)))
        field = F.interpolate(coarse, size=(h * scale, w * scale), mode="bicubic", align_corners=False)[0, 0].numpy()
        bump = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * (1.2 * radius) ** 2))
        score = 2.5 * bump + 0.6 * field  # a blob around the shape's centre, with a random outline
        blob = score >= np.quantile(score, 1 - inside.mean())  # the shape's area, as a share of the image
        canvas = np.where(blob[..., None], fg, bg)
        out[i] = canvas.reshape(h, scale, w, scale, c).mean((1, 3)).round().astype(np.uint8)
    return out


def known_sets(data: str, resolution: int, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{name: uint8 images} for the ladder and the impostors, from held-out real images."""
    rng = np.random.default_rng(seed)
    real = held_out_images(data, resolution, count)
    sets = {"real": real, **{f"real+noise{s:g}": _add_noise(real, s, rng) for s in NOISE_LEVELS},
            "noise": noise_images(real.shape, seed + 1)}
    sets.update({"blobs": _blobs(real, rng), "blurred": _blurred(real), "shuffled": _shuffled(real, rng)})
    return sets


def checkpoint_series(run: str | Path) -> list[tuple[int, np.ndarray]]:
    """(step, samples) of a run's learning-curve evaluations and its final samples, by step, each cut
    to the count of the smallest (sample i of every checkpoint starts from the same noise)."""
    run = Path(run)
    series = []
    for folder in sorted((run / "samples" / "curve").glob("step-*")) + [run / "samples" / "final"]:
        npz, stamp = folder / "samples.npz", folder / "provenance.json"
        if npz.exists() and stamp.exists():
            series.append((json.loads(stamp.read_text())["step"], np.load(npz)["images"]))
    count = min((len(images) for _, images in series), default=0)
    return sorted(((step, images[:count]) for step, images in series), key=lambda item: item[0])


def _oriented(metric: str, values) -> np.ndarray:
    """Values turned so that larger is better."""
    values = np.asarray(values, float)
    return -values if QUALITY_METRICS[metric].lower_is_better else values


def spearman(x, y) -> float:
    """Rank correlation; 0 where x does not vary (a metric that cannot tell the sets apart)."""
    from scipy import stats

    return 0.0 if np.ptp(np.asarray(x, float)) == 0 else float(stats.spearmanr(x, y).statistic)


def relative(value: float, real: float, noise: float) -> float:
    """A score on the scale where noise is 0 and held-out real images are 1."""
    return float((value - noise) / (real - noise)) if real != noise else float("nan")


def validate(data: str = "shapes-gray", resolution: int = 16, count: int = 128, runs=(), rounds: int = 10,
             progress=lambda it, **kw: it) -> dict:
    """The validation record: per set, each metric's score and its resampling spread; per metric,
    the ladder correlation, the impostor check, the checkpoint correlations and the verdict."""
    found = {str(run): checkpoint_series(run) for run in runs}  # checked before the long work
    for run, points in found.items():
        if len(points) < 3:
            raise FileNotFoundError(f"{run}: {len(points)} evaluated checkpoint(s) under samples/; a series needs "
                                    "at least 3 (run its study with eval_every, e.g. the smoke scale)")
    reference = reference_images(data, resolution, count)
    sets = known_sets(data, resolution, count)
    scores, spread = {}, {}
    for name, images in progress(sets.items(), desc="sets"):
        scores[name] = quality(reference, images, data, resolution)
        spread[name] = bootstrap(reference, images, data, resolution, rounds=rounds) if rounds > 1 else {}
    series = {run: [{"step": step, **quality(reference_images(data, resolution, len(images)), images, data, resolution)}
                    for step, images in progress(points, desc=run)] for run, points in found.items()}
    verdicts = {}
    for metric in scores["real"]:
        ladder = _oriented(metric, [scores[name][metric] for name in LADDER])
        rho = spearman(ladder, -np.arange(len(LADDER)))
        impostors = {name: relative(scores[name][metric], scores["real"][metric], scores["noise"][metric])
                     for name in IMPOSTORS}
        fooled = [name for name, value in impostors.items() if not value <= PASS_IMPOSTOR]
        checkpoint_rhos = [spearman(_oriented(metric, [p[metric] for p in points]), [p["step"] for p in points])
                           for points in series.values()]
        mean_rho = float(np.mean(checkpoint_rhos)) if checkpoint_rhos else None
        passed = rho >= PASS_LADDER and not fooled and (mean_rho is None or mean_rho >= PASS_CHECKPOINTS)
        verdicts[metric] = {"ladder_spearman": rho, "impostors_relative": impostors, "impostors_above": fooled,
                            "checkpoint_spearman": checkpoint_rhos, "checkpoint_mean": mean_rho, "passes": passed}
    return {"data": data, "resolution": resolution, "count": count, "rounds": rounds,
            "ladder": list(LADDER), "impostors": list(IMPOSTORS),
            "thresholds": {"ladder_spearman": PASS_LADDER, "impostor_relative": PASS_IMPOSTOR,
                           "checkpoint_spearman": PASS_CHECKPOINTS},
            "scores": scores, "spread": spread, "checkpoints": series, "verdicts": verdicts, "code": stamp("metrics")}


def _verdict_table(record: dict) -> str:
    from usm.markdown import table

    verdict_rows = []
    for m, v in record["verdicts"].items():
        impostors = ", ".join(f"{name} {value:.2f}" for name, value in v["impostors_relative"].items())
        runs = v["checkpoint_spearman"]
        rhos = "-" if not runs else f"{v['checkpoint_mean']:.2f} (min {min(runs):.2f}, {len(runs)} runs)"
        verdict_rows.append([QUALITY_METRICS[m].label, f"{v['ladder_spearman']:.2f}", impostors, rhos,
                             "passes" if v["passes"] else "fails"])
    headers = ["metric", "ladder Spearman", "impostors (noise 0, real 1)", "checkpoint Spearman", "verdict"]
    return table(headers, verdict_rows, padded=True)


def _thresholds(record: dict) -> str:
    t = record["thresholds"]
    return (f"{record['count']} images a set ({record['data']}, {record['resolution']} px), from held-out real "
            f"images; ± is the std over {record['rounds']} resamplings of the set (SWD: not resampled). A metric "
            f"passes with ladder Spearman >= {t['ladder_spearman']}, every impostor at most "
            f"{t['impostor_relative']} on the scale noise = 0, real = 1, and checkpoint Spearman >= "
            f"{t['checkpoint_spearman']} (mean over runs) where checkpoints are given.")


def render_verdicts(record: dict) -> str:
    """The verdict table and the thresholds it applies (docs/metrics.md shows it)."""
    return _verdict_table(record) + "\n\n" + _thresholds(record) + "\n\n" + _stamp(record)


def render(record: dict) -> str:
    """The record as Markdown: the verdict table, then every set's scores with their spread, then
    each run's checkpoints."""
    from analysis.report.tables import human
    from usm.markdown import table

    metrics = list(record["verdicts"])
    lines = [_verdict_table(record), ""]
    names = record["ladder"] + record["impostors"]
    rows = [[name, *[f"{human(record['scores'][name][m])} ± {human(record['spread'][name][m])}"
                     if m in record["spread"][name] else human(record["scores"][name][m]) for m in metrics]]
            for name in names]
    lines.append(table(["set", *[QUALITY_METRICS[m].label for m in metrics]], rows, padded=True, numbers=True))
    for run, points in record["checkpoints"].items():
        lines += ["", f"Checkpoints of {run}:", "",
                  table(["step", *[QUALITY_METRICS[m].label for m in metrics]],
                        [[p["step"], *[human(p[m]) for m in metrics]] for p in points], padded=True, numbers=True)]
    lines += ["", _thresholds(record), "", _stamp(record)]
    return "\n".join(lines)


def _stamp(record: dict) -> str:
    return stamp_line(record.get("code", f"metrics@{UNRECORDED}"))
