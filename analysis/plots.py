"""Study plots (PNG and PDF): quality vs GFLOPs, loss curves per arm, efficiency bars, recipe samples
beside real images, scaling.

    python -m analysis plots --study ablations [--results results]

Every figure is drawn from the study's files only (``analysis.collect``), and written to
``results/<study>/plots/``. The scaling figure is drawn from ``results/profile/*.json``
(``python -m analysis profile``) when they exist.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.collect import collect_study, loss_curves  # noqa: E402

QUALITY = ("fid", "swd")  # the first one a study has is its quality metric


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
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


def efficiency_bars(frame, out_dir) -> list[Path]:
    columns = [c for c in ("params", "gflops", "activation_bytes", "train_steps_per_s") if c in frame.columns]
    if not columns:
        return []
    by_arm = frame.groupby("arm", sort=False)[columns].mean()
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.2), squeeze=False)
    for ax, column in zip(axes[0], columns):
        ax.bar(range(len(by_arm)), by_arm[column].values)
        ax.set_xticks(range(len(by_arm)), by_arm.index, rotation=45, ha="right", fontsize=7)
        ax.set_title(column, fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir, "efficiency")


def sample_grid(study_dir, frame, out_dir, count: int = 32) -> list[Path]:
    """The first arm's (the recipe's) first samples beside as many real training images."""
    import json

    import numpy as np

    done = frame[frame["status"] == "done"]
    if done.empty:
        return []
    run = Path(study_dir) / done.iloc[0]["run"]
    samples_file = run / "samples" / "final" / "samples.npz"
    if not samples_file.exists() or not (run / "point.json").exists():
        return []
    from analysis.quality import reference_images

    settings = json.loads((run / "point.json").read_text())["settings"]
    samples = np.load(samples_file)["images"][:count]
    real = reference_images(settings["data"], settings["resolution"], len(samples))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax, images, title in ((axes[0], real, "real (training images)"),
                              (axes[1], samples, f"{done.iloc[0]['arm']}, seed {done.iloc[0]['seed']}")):
        n, h, w, c = images.shape
        cols = 8
        rows = -(-n // cols)
        canvas = np.zeros((rows * (h + 1), cols * (w + 1), c), np.uint8)
        for i, image in enumerate(images):
            r, q = divmod(i, cols)
            canvas[r * (h + 1): r * (h + 1) + h, q * (w + 1): q * (w + 1) + w] = image
        ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, out_dir, "samples")


def scaling_lines(profile_dir, out_dir) -> list[Path]:
    from analysis.profile import load_records, scaling_plot

    records = load_records(profile_dir)
    if not records:
        return []
    return scaling_plot(records, out_dir)


def write_plots(study_dir, results_dir="results") -> list[Path]:
    study_dir = Path(study_dir)
    out_dir = study_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = collect_study(study_dir)
    return (quality_vs_gflops(frame, out_dir) + loss_curves_plot(study_dir, out_dir) + efficiency_bars(frame, out_dir)
            + sample_grid(study_dir, frame, out_dir) + scaling_lines(Path(results_dir) / "profile", out_dir))
