"""Study tables: each arm's mean and spread over seeds, its paired difference to the recipe with a
95% interval, the metric's floor and ceiling, and the learning curve -- as Markdown, LaTeX, CSV.

    python -m analysis table --study ablations [--results results]

    >>> human(492940, "params"), human(0.04008), human(4.929e5), human(0.000123456)
    ('0.49 M', '0.0401', '492,900', '0.000123')

Each metric cell reads ``mean ± std`` over the arm's completed runs (no ``±`` with one seed). The
quality columns are the headline metrics (``analysis.metrics.quality.HEADLINE``: those that passed the
metric validation, ``python -m analysis validate-metrics``), then pixel precision and recall; every
other metric is in ``table.csv`` and ``runs.csv``. Below the arms, the ``data`` row holds the
metrics of held-out real images (the floor: a perfect model's score at this sample count) and the
``noise`` row those of Gaussian noise (the ceiling), from ``analysis.metrics.quality.calibration``; a study
over several datasets gets a pair of rows per dataset.

Comparisons with the recipe (``comparisons.md``): the arms of one seed share every random draw
(``docs/metrics.md``: common random numbers), so each arm is compared with the recipe run of the
same seed. For each headline metric the table gives the mean paired difference over seeds with a
95% t-interval (mean ± t(n-1) x sd / sqrt(n): exact for normal differences, and honest at few
seeds, where any interval from the seeds alone is wide; sd is never taken below what the two runs'
sample draws alone give, from their bootstrap spread in ``runs.csv``), the word ``better`` or ``worse`` where the
interval excludes 0 and ``inconclusive`` where it covers it, and how many seeds would resolve a
difference of the observed size (80% power at the 5% level: the fewest n with
(t(n-1) + z(0.8)) x sd / sqrt(n) <= |difference|).
``curve.md`` holds the learning curve: each headline metric, and pixel precision (the metric the
reach-the-data target is set in), per arm at every evaluation step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from analysis.metrics.quality import HEADLINE, QUALITY_METRICS
from analysis.report.collect import collect_study, last_launch, learning_curves
from usm import deprecated
from usm.files import atomic_write
from usm.markdown import latex, table
from usm.provenance import stamp_line

CURVE_METRICS = (*HEADLINE, "precision")  # precision: unvalidated (†), but it exists for every dataset up to 64 px

NON_METRICS = {"run", "code", "order", "arm", "seed", "model", "data", "status", "why", "step", "max_steps",
               "num_samples", "images_seen"}
SHOWN_BESIDE_HEADLINE = ("precision", "recall")  # always in the table, validated or not (marked)
LEVEL, POWER = 0.95, 0.80
COSTS = {"train_images_per_s": "train img/s", "activation_mib": "act. MiB", "peak_rss_mib": "peak RSS MiB",
         "peak_cuda_mib": "peak GPU MiB", "sample_seconds_per_image": "sample s/img"}  # analysis/metrics/run_cost.py
LABELS = {"final_loss": "final loss", "params": "params", "gflops": "GFLOPs", **COSTS,
          **{k: m.label for k, m in QUALITY_METRICS.items()}}


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Every numeric metric column: efficiency and loss first, then quality in QUALITY_METRICS order."""
    columns = [c for c in frame.columns if c not in NON_METRICS and not c.startswith("axis.")
               and not c.endswith("_sampling_std") and pd.api.types.is_numeric_dtype(frame[c])]
    first = [c for c in ("final_loss", "params", "gflops", *COSTS, *QUALITY_METRICS) if c in columns]
    return first + [c for c in columns if c not in first]


def shown_columns(metrics: list[str]) -> list[str]:
    """The columns of the Markdown table: non-quality metrics, the headline, precision and recall."""
    quality = [m for m in (*HEADLINE, *SHOWN_BESIDE_HEADLINE) if m in metrics]
    return [m for m in metrics if m not in QUALITY_METRICS] + list(dict.fromkeys(quality))


def human(value, kind: str = "", digits: int = 3) -> str:
    """A number as a reader wants it: parameters in millions, otherwise ``digits`` significant digits
    without exponents (large values with thousands separators)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "params":
        return f"{value / 1e6:.2f} M"
    if value == 0:
        return "0"
    if abs(value) < 1e-4:
        return "< 0.0001" if value > 0 else "> -0.0001"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    rounded = float(f"{value:.{digits}g}")  # 0.0099999 is 0.0100, not 0.01000
    decimals = max(digits - 1 - math.floor(math.log10(abs(rounded))), 0)
    return f"{rounded:.{decimals}f}"


def paired_difference(arm: pd.Series, recipe: pd.Series, lower_is_better: bool,
                      sampling_var: pd.Series | None = None) -> dict:
    """Mean of (arm - recipe) over the seeds both have (Series indexed by seed), its 95% t-interval,
    its outcome (better, worse, inconclusive) and the seeds an effect of this size needs.
    ``sampling_var`` (per seed: the two runs' bootstrap variances added) bounds the variance of one
    difference from below: seeds can agree by chance (two seeds that each differ by exactly one
    sample give a spread of 0), but no difference is known better than the draw of its samples
    allows. Fields are NaN/'-' where undefined."""
    from scipy import stats

    both = arm.dropna().index.intersection(recipe.dropna().index)
    d = (arm[both] - recipe[both]).astype(float)
    out = {"n": len(d), "diff": float(d.mean()) if len(d) else math.nan, "low": math.nan, "high": math.nan,
           "outcome": "-", "seeds_needed": math.nan}
    if len(d) < 2:
        out["outcome"] = "one seed" if len(d) else "-"
        return out
    variance = float(d.var(ddof=1))
    if sampling_var is not None and sampling_var.reindex(both).notna().all():
        variance = max(variance, float(sampling_var.reindex(both).mean()))
    half = stats.t.ppf(0.5 + LEVEL / 2, len(d) - 1) * math.sqrt(variance / len(d))
    out["low"], out["high"] = out["diff"] - half, out["diff"] + half
    if out["low"] > 0 or out["high"] < 0:
        out["outcome"] = "worse" if (out["diff"] > 0) == lower_is_better else "better"
    else:
        out["outcome"] = "inconclusive"
    if out["diff"] != 0:  # the fewest seeds whose interval would exclude 0 with probability POWER
        power = stats.norm.ppf(POWER)
        out["seeds_needed"] = next((n for n in range(2, 100_001) if (stats.t.ppf(0.5 + LEVEL / 2, n - 1) + power)
                                    * math.sqrt(variance / n) <= abs(out["diff"])), math.inf)
    return out


def references(frame: pd.DataFrame) -> dict[str, str]:
    """Each arm's reference: the first arm (in the grid's order: the recipe first) trained on the same
    dataset. Scores on different datasets measure different things, so no arm is compared across them."""
    data = frame["data"] if "data" in frame.columns else pd.Series([None] * len(frame), index=frame.index)
    first = {}
    for arm, dataset in zip(frame["arm"], data.fillna("")):
        first.setdefault(dataset, arm)
    return {arm: first[dataset] for arm, dataset in zip(frame["arm"], data.fillna(""))}


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per arm: mean and std of each metric over done runs, seeds done, runs incomplete, its
    ``reference`` (``references``: the recipe, or the first arm of its dataset), and for quality
    metrics the paired difference to the reference: ``{m}_diff``, ``{m}_low``, ``{m}_high``,
    ``{m}_outcome``, ``{m}_seeds_needed``."""
    metrics = metrics or metric_columns(frame)
    done = frame[frame["status"] == "done"]
    arms = list(dict.fromkeys(frame["arm"]))  # first-seen order: the recipe first
    reference_of = references(frame)
    rows = []
    for arm in arms:
        runs = done[done["arm"] == arm]
        recipe = done[done["arm"] == reference_of[arm]].set_index("seed")
        incomplete = int(((frame["arm"] == arm) & (frame["status"] != "done")).sum())
        row = {"arm": arm, "reference": reference_of[arm], "seeds": len(runs), "incomplete": incomplete}
        for metric in metrics:
            # a run without the metric, or with a non-finite one, makes the cell '-': never averaged away
            values = runs[metric].replace([math.inf, -math.inf], math.nan)
            whole = values.notna().all()
            row[f"{metric}_mean"] = values.mean() if len(values) and whole else None
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 and whole else None
            if metric in QUALITY_METRICS and arm != reference_of[arm]:
                spread = f"{metric}_sampling_std"
                sampling_var = (runs.set_index("seed")[spread] ** 2 + recipe[spread] ** 2
                                if spread in frame.columns else None)
                paired = paired_difference(runs.set_index("seed")[metric], recipe[metric],
                                           QUALITY_METRICS[metric].lower_is_better, sampling_var)
                row.update({f"{metric}_{key}": value for key, value in paired.items() if key != "n"})
        rows.append(row)
    return pd.DataFrame(rows)


def outcomes(row, metrics: list[str]) -> str:
    """The headline metrics whose paired interval excludes 0, with the direction; else 'inconclusive'."""
    tested = [m for m in metrics if m in HEADLINE and isinstance(row.get(f"{m}_outcome"), str)
              and row[f"{m}_outcome"] in ("better", "worse", "inconclusive")]
    if not tested:
        return "-"
    marks = [f"{LABELS[m]} {row[f'{m}_outcome']}" for m in tested if row[f"{m}_outcome"] != "inconclusive"]
    return "; ".join(marks) or "inconclusive"


def _cell(mean, std, kind) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    if std is None or pd.isna(std) or (std == 0 and kind in ("params", "gflops", "activation_mib")):  # fixed by the arm
        return human(mean, kind)
    return f"{human(mean, kind)} ± {human(std, kind)}"


def _label(metric: str) -> str:
    unvalidated = metric in QUALITY_METRICS and metric not in HEADLINE
    return LABELS.get(metric, metric) + (" †" if unvalidated else "")


def calibration_rows(calibrations: dict[str, dict] | None):
    """(row name, metrics) of each dataset's floor and ceiling: 'data (held-out real)' and 'noise',
    with the dataset's name when a study has several."""
    calibrations = calibrations or {}
    for dataset, calibration in calibrations.items():
        suffix = f": {dataset}" if len(calibrations) > 1 else ""
        for name, key in (("data (held-out real)", "data"), ("noise", "noise")):
            if calibration.get(key):
                yield name + suffix, calibration[key]


def render(summary: pd.DataFrame, metrics: list[str], calibrations: dict[str, dict] | None = None
           ) -> tuple[str, str]:
    """(markdown, latex) of a summary, with each dataset's data and noise rows (``{dataset: calibration}``)."""
    first = summary["arm"].iloc[0] if len(summary) else "first arm"
    several = len(summary) and summary["reference"].nunique() > 1
    header = ["arm", "seeds", *[_label(m) for m in metrics], "vs its dataset's first arm" if several else f"vs {first}",
              "incomplete"]
    body = []
    for _, r in summary.iterrows():
        cells = [r["arm"], str(r["seeds"]), *[_cell(r[f"{m}_mean"], r[f"{m}_std"], m) for m in metrics]]
        body.append(cells + ["(reference)" if r["arm"] == r["reference"] else outcomes(r, metrics),
                             str(r["incomplete"])])
    for name, values in calibration_rows(calibrations):
        body.append([name, "", *[human(values[m]) if m in values else "" for m in metrics], "", ""])
    markdown = table(header, body, padded=True)
    return markdown, latex(header, body)


def comparisons(summary: pd.DataFrame, metrics: list[str]) -> str:
    """Markdown: per arm and quality metric, the paired difference to its reference and its interval
    (headline metrics; pixel precision and recall too, marked †, where a dataset has no headline metric)."""
    rows = []
    several = summary["reference"].nunique() > 1
    for _, r in summary[summary["arm"] != summary["reference"]].iterrows():
        compared = [m for m in metrics if f"{m}_diff" in r and not pd.isna(r[f"{m}_diff"])]
        shown = [m for m in compared if m in HEADLINE] or [m for m in compared if m in SHOWN_BESIDE_HEADLINE]
        for m in shown:
            interval = "-" if pd.isna(r[f"{m}_low"]) else f"[{human(r[f'{m}_low'])}, {human(r[f'{m}_high'])}]"
            needed = r[f"{m}_seeds_needed"]
            rows.append([r["arm"], *([r["reference"]] if several else []), _label(m), human(r[f"{m}_diff"]), interval,
                         r[f"{m}_outcome"],
                         "-" if pd.isna(needed) else "> 100,000" if math.isinf(needed) else f"{int(needed):,}"])
    return table(["arm", *(["compared with"] if several else []), "metric",
                  "difference to " + ("it" if several else "recipe"), f"{LEVEL:.0%} interval", "outcome",
                  "seeds to resolve it"], rows, padded=True)


def curve_table(curves: pd.DataFrame, metrics: list[str], calibrations: dict[str, dict] | None = None) -> str:
    """Markdown: each of ``CURVE_METRICS`` per arm (mean ± std over seeds) at every evaluation step,
    with each dataset's floor and ceiling at the curve's sample count (``{dataset: calibration}``)."""
    blocks = []
    for m in (m for m in CURVE_METRICS if m in metrics and m in curves.columns and curves[m].notna().any()):
        by_step = curves.groupby(["arm", "step"], sort=False)[m].agg(["mean", "std"]).reset_index()
        steps = sorted(by_step["step"].unique())
        rows = []
        for arm in dict.fromkeys(curves["arm"]):
            mine = by_step[by_step["arm"] == arm]
            cells = {row["step"]: _cell(row["mean"], row["std"], m) for _, row in mine.iterrows()}
            rows.append([arm, *[cells.get(step, "-") for step in steps]])
        for name, values in calibration_rows(calibrations):
            if m in values:
                rows.append([name, human(values[m]), *[""] * (len(steps) - 1)])
        images = dict(zip(curves["step"], curves["images_seen"]))
        header = ["arm", *[f"step {s} ({images[s]:,} images)" for s in steps]]
        blocks.append(f"{_label(m)}:\n\n" + table(header, rows, padded=True))
    return "\n\n".join(blocks)


def caption(frame: pd.DataFrame, calibrations: dict[str, dict] | None, launch: dict | None = None) -> str:
    several = "data" in frame.columns and frame["data"].nunique() > 1
    first = "the first row of its dataset (same seeds; no arm is compared across datasets)" if several \
        else "the first row (the recipe, same seeds)"
    parts = [f"Mean ± std over seeds (sample std). 'vs': the headline metrics whose paired difference to {first} "
             f"has a {LEVEL:.0%} t-interval that excludes 0 (comparisons.md lists every "
             "difference, its interval and the seeds it would need); 'inconclusive' where every interval covers 0. "
             "† : not a headline metric: it failed the metric validation (docs/metrics.md)."]
    if "device" in frame.columns and frame["device"].notna().any():
        parts.append(f"Costs (train img/s, peak memory, sample s/img) measured in each point on "
                     f"{', '.join(sorted(frame['device'].dropna().unique()))}; act. MiB: bytes one training step "
                     "saves for backward (pure-PyTorch scan).")
    if "num_samples" in frame.columns and frame["num_samples"].notna().any():
        parts.append(f"Quality on {int(frame['num_samples'].dropna().iloc[0])} samples per run.")
    if launch and launch.get("points"):
        times = sorted(launch["points"].values())
        parts.append(f"Wall time of the last launch ({launch['date']}): {len(times)} points, {launch['parallel']} at a "
                     f"time on {launch['cpus']} CPUs, in {launch['seconds']:.0f} s with the calibration (points of "
                     f"{times[0]:.0f}-{times[-1]:.0f} s).")
    for dataset, calibration in (calibrations or {}).items():
        which = f" ({dataset})" if len(calibrations) > 1 else ""
        parts.append(f"'data'{which}: {calibration['floor_set']}, scored against {calibration['reference']} "
                     "(the floor); 'noise': Gaussian noise scored the same way (the ceiling).")
        if calibration.get("classifier"):
            c = calibration["classifier"]
            parts.append(f"Shape classifier held-out accuracy: {c['held_out_accuracy']:.3f} ({c['held_out']}).")
    return " ".join(parts)


def study_calibrations(study_dir: Path, count: int | None = None) -> dict[str, dict]:
    """``{dataset: calibration}`` for every dataset of a study's sample-quality points (from their
    point.json), at the points' sample count or at ``count`` samples (a learning curve's); sorted by name."""
    from analysis.metrics.quality import calibration

    found = {}
    for spec in sorted(Path(study_dir).glob("*/point.json")):
        settings = deprecated.upgrade(json.loads(spec.read_text()).get("settings", {}))
        if settings.get("metric") == "pixel" and settings.get("num_samples") and settings["data"] not in found:
            found[settings["data"]] = calibration(settings["data"], settings["resolution"],
                                                  count or settings["num_samples"])
    return dict(sorted(found.items()))


HEADLINE_CAPTION = ("The validated metrics alone, mean ± std over seeds; 'vs': paired 95% intervals seed by seed\n"
                    "(comparisons.md); 'data' and 'noise': the floor and the ceiling. Every column: table.md.")


def write_tables(study_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    study_dir = Path(study_dir)
    out_dir = Path(out_dir or study_dir)
    frame = collect_study(study_dir)
    metrics = metric_columns(frame)
    summary = summarize(frame, metrics)
    calib = study_calibrations(study_dir)
    shown = shown_columns(metrics)
    markdown, latex = render(summary, shown, calib)
    paths = {"md": out_dir / "table.md", "tex": out_dir / "table.tex", "csv": out_dir / "table.csv",
             "runs": out_dir / "runs.csv", "comparisons": out_dir / "comparisons.md"}
    code = stamp_line(s for stamps in frame["code"] for s in stamps.split())
    atomic_write(paths["md"], markdown + "\n\n" + caption(frame, calib, last_launch(study_dir)) + "\n\n" + code + "\n")
    headline = [m for m in HEADLINE if m in metrics] or [m for m in SHOWN_BESIDE_HEADLINE if m in metrics]
    paths["headline"] = out_dir / "headline.md"
    atomic_write(paths["headline"], f"{render(summary, headline, calib)[0]}\n\n{HEADLINE_CAPTION}\n\n{code}\n")
    atomic_write(paths["tex"], latex + "\n")
    atomic_write(paths["comparisons"], comparisons(summary, metrics) + "\n\n" + code + "\n")
    atomic_write(paths["csv"], summary.to_csv(index=False))
    atomic_write(paths["runs"], frame.to_csv(index=False))
    curves = learning_curves(study_dir)
    if not curves.empty:
        paths["curve"] = out_dir / "curve.md"
        count = int(curves["num_samples"].max())
        atomic_write(paths["curve"], curve_table(curves, metrics, study_calibrations(study_dir, count)) + "\n\n"
                     f"Mean ± std over seeds, each evaluation on {count} samples; 'data' and 'noise': "
                     f"held-out real images and noise at {count} samples.\n\n" + code + "\n")
        atomic_write(out_dir / "curve.csv", curves.to_csv(index=False))
    if calib:  # {dataset: calibration}
        atomic_write(out_dir / "calibration.json", json.dumps(calib, indent=2))
    return paths

