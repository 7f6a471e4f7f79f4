"""Study plots (PNG and PDF): quality vs GFLOPs, loss curves per arm, learning curves (quality as the
runs train), efficiency bars, every run's samples under real images, scaling.

    python -m analysis plots --study ablations [--results results]

Every figure is drawn from the study's files only (``analysis.report.collect``), and written to
``results/<study>/plots/``. The scaling figure is drawn from ``results/profile/*.json``
(``python -m analysis profile``) when they exist.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.report.collect import collect_study, learning_curves, loss_curves  # noqa: E402
from usm import deprecated  # noqa: E402
from usm.files import atomic_save  # noqa: E402

QUALITY = ("fid", "swd")  # the first one a study has is its quality metric


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:
        atomic_save(path, fig.savefig, format=path.suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def quality_vs_gflops(frame, out_dir) -> list[Path]:
    quality = next((q for q in QUALITY if q in frame.columns), None)
    if quality is None or "gflops" not in frame.columns:
        return []
    done = frame[frame["status"] == "done"]
    fig, ax = plt.subplots(figsize=(5, 4))
    for arm, runs in done.groupby("arm", sort=False):
        ax.scatter(runs["gflops"], runs[quality], label=arm)
    ax.set_xlabel("forward GFLOPs (batch 1)")
    ax.set_ylabel(quality.upper() + " (lower is better)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, "quality_vs_gflops")


def loss_curves_plot(study_dir, out_dir) -> list[Path]:
    curves = loss_curves(study_dir)
    if curves.empty:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, rows in curves.groupby("arm", sort=False):
        mean = rows.groupby("step")["loss"].mean().rolling(5, min_periods=1).mean()
        ax.plot(mean.index, mean.values, label=arm)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over seeds, smoothed)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, "loss_curves")


X_AXES = {"images_seen": ("training images seen", "learning_curves"),
          "train_seconds": ("training seconds (evaluations left out)",
                            "learning_curves_by_time")}


def learning_curves_plot(study_dir, out_dir, by: str = "images_seen") -> list[Path]:
    """One panel per curve metric (``analysis.report.tables.CURVE_METRICS``: the headline, then pixel
    precision): each arm's mean over seeds against images seen (or training seconds, ``by``), its
    seeds' range as a band, and each dataset's floor (held-out real) and ceiling (noise) at the
    curve's sample count as dashed lines."""
    from analysis.metrics.quality import HEADLINE, QUALITY_METRICS
    from analysis.report.tables import CURVE_METRICS, calibration_rows, study_calibrations

    curves = learning_curves(study_dir)
    metrics = [m for m in CURVE_METRICS if not curves.empty and m in curves.columns and curves[m].notna().any()]
    if not metrics or curves[by].isna().all():  # no curve, or runs that logged no rates to time them by
        return []
    calibrations = study_calibrations(Path(study_dir), int(curves["num_samples"].max()))  # at the curve's count
    colours = {arm: f"C{i % 10}" for i, arm in enumerate(dict.fromkeys(curves["arm"]))}  # one per arm in every panel
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for arm, rows in curves.groupby("arm", sort=False):
            stats = rows.groupby("step").agg(x=(by, "mean"), mean=(metric, "mean"), min=(metric, "min"),
                                             max=(metric, "max")).set_index("x")
            stats = stats[stats.index.notna()]
            if stats["mean"].isna().all():  # a metric this arm's dataset does not have (or no times)
                continue
            ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=arm, color=colours[arm])
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colours[arm], alpha=0.15)
        for name, values in calibration_rows(calibrations):
            if values.get(metric) is not None:
                ax.axhline(values[metric], color="gray", linestyle="--", linewidth=0.8)
                ax.annotate(name.replace("data (held-out real)", "held-out real"), (0, values[metric]),
                            xycoords=("axes fraction", "data"), fontsize=6, color="gray", va="bottom")
        label = QUALITY_METRICS[metric]
        mark = "" if metric in HEADLINE else " †"
        ax.set_title(f"{label.label}{mark} ({'lower' if label.lower_is_better else 'higher'} is better)", fontsize=9)
        ax.set_xlabel(X_AXES[by][0])
        ax.grid(alpha=0.3)
    max(axes[0], key=lambda ax: len(ax.get_lines())).legend(fontsize=6)  # the panel that shows every arm
    fig.tight_layout()
    return _save(fig, out_dir, X_AXES[by][1])


def efficiency_bars(frame, out_dir) -> list[Path]:
    """Per arm: size, FLOPs and what the points measured of their cost (analysis/metrics/run_cost.py)."""
    from analysis.report.tables import LABELS

    columns = [c for c in ("params", "gflops", "activation_bytes", "train_steps_per_s", "activation_mib",
                           "train_images_per_s", "peak_rss_mib", "peak_cuda_mib", "sample_seconds_per_image")
               if c in frame.columns and frame[c].notna().any()]
    if not columns:
        return []
    by_arm = frame.groupby("arm", sort=False)[columns].mean()
    device = ", ".join(sorted(frame["device"].dropna().unique())) if "device" in frame.columns else ""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.2), squeeze=False)
    for ax, column in zip(axes[0], columns):
        ax.bar(range(len(by_arm)), by_arm[column].values)
        ax.set_xticks(range(len(by_arm)), by_arm.index, rotation=45, ha="right", fontsize=7)
        ax.set_title(LABELS.get(column, column), fontsize=9)
    if device:
        fig.suptitle(f"measured on {device}", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir, "efficiency")


def sample_rows(study_dir, frame, count: int = 16) -> list[tuple]:
    """(label, uint8 images) rows of the samples figure: per dataset, ``count`` real training images,
    then the first ``count`` samples of every finished run on it (arm and seed, in the grid's order)."""
    import json

    import numpy as np

    from analysis.metrics.quality import reference_images

    done = frame[frame["status"] == "done"]
    by_data: dict[tuple, list] = {}
    for _, row in done.iterrows():
        run = Path(study_dir) / row["run"]
        path = run / "samples" / "final" / "samples.npz"
        if path.exists() and (run / "point.json").exists():
            settings = deprecated.upgrade(json.loads((run / "point.json").read_text())["settings"])
            by_data.setdefault((settings["data"], settings["resolution"]), []).append((row, path))
    rows = []
    for (data, resolution), runs in by_data.items():
        rows.append(("real (training images)" if len(by_data) == 1 else f"real: {data}",
                     reference_images(data, resolution, count)))
        rows += [(f"{row['arm']}, seed {row['seed']}", np.load(path)["images"][:count]) for row, path in runs]
    return rows


def sample_grid(study_dir, frame, out_dir, count: int = 16) -> list[Path]:
    """The samples figure (``sample_rows``): sample i of every run starts from the same noise, so a
    column compares the arms on like terms."""
    return image_rows(sample_rows(study_dir, frame, count), out_dir, "samples", count)


def image_rows(rows, out_dir, name: str, count: int = 16) -> list[Path]:
    """Labelled rows of uint8 images ((label, (N, H, W, C)) each; ``count`` a row) as NAME.png/.pdf."""
    import numpy as np

    if not rows:
        return []
    h, w, c = (max(images.shape[axis] for _, images in rows) for axis in (1, 2, 3))
    canvas = np.full((len(rows) * (h + 2), count * (w + 1), c), 255, np.uint8)
    for r, (_, images) in enumerate(rows):
        for q, image in enumerate(np.repeat(images[:count], c // images.shape[-1], axis=-1)):  # gray beside colour
            canvas[r * (h + 2): r * (h + 2) + image.shape[0], q * (w + 1): q * (w + 1) + image.shape[1]] = image
    fig, ax = plt.subplots(figsize=(0.45 * count + 2.2, 0.45 * len(rows) + 0.3))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_yticks([r * (h + 2) + h / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=7)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout()
    return _save(fig, Path(out_dir), name)


def scaling_lines(profile_dir, out_dir) -> list[Path]:
    from analysis.metrics.profile import load_records, scaling_plot

    records = load_records(profile_dir)
    if not records:
        return []
    return scaling_plot(records, out_dir)


def write_plots(study_dir, results_dir="results") -> list[Path]:
    study_dir = Path(study_dir)
    out_dir = study_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = collect_study(study_dir)
    return (quality_vs_gflops(frame, out_dir) + loss_curves_plot(study_dir, out_dir)
            + learning_curves_plot(study_dir, out_dir) + learning_curves_plot(study_dir, out_dir, "train_seconds")
            + efficiency_bars(frame, out_dir)
            + sample_grid(study_dir, frame, out_dir) + scaling_lines(Path(results_dir) / "profile", out_dir))
