"""Study tables: mean and spread over seeds per arm, significance against the recipe, and the
metric's floor and ceiling -- as Markdown, LaTeX (booktabs) and CSV.

    python -m analysis table --study ablations [--results results]

    >>> human(492940, "params"), human(0.04008), human(4.929e5), human(0.000123456)
    ('0.49 M', '0.0401', '492,900', '0.000123')

Each metric cell reads ``mean ± std`` over the arm's completed runs (no ``±`` with one seed).
For every quality metric (``analysis.quality.QUALITY_METRICS``) each arm is compared with the
recipe (the grid's first arm) by Welch's two-sided t-test over seeds; the ``vs recipe`` column
names the metrics whose p < 0.05 and says in which direction the arm differs (better / worse).
Below the arms, the ``data`` row holds the metrics of real images against real images (the
floor: a perfect model's score at this sample count) and the ``noise`` row those of Gaussian
noise (the ceiling), both from ``analysis.quality.calibration``; SWD is also shown divided by
its floor. Incomplete runs are counted in their own column, not averaged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import collect_study
from analysis.quality import QUALITY_METRICS

NON_METRICS = {"run", "order", "arm", "seed", "model", "status", "why", "step", "max_steps", "num_samples"}
ALPHA = 0.05
LABELS = {"final_loss": "final loss", "params": "params", "gflops": "GFLOPs",
          **{k: m.label for k, m in QUALITY_METRICS.items()}}


def metric_columns(frame: pd.DataFrame) -> list[str]:
    columns = [c for c in frame.columns if c not in NON_METRICS and not c.startswith("axis.")
               and pd.api.types.is_numeric_dtype(frame[c])]
    first = [c for c in ("final_loss", "params", "gflops", *QUALITY_METRICS) if c in columns]
    return first + [c for c in columns if c not in first]


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
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:.{decimals}f}"


def welch_p(a, b) -> float:
    """Two-sided p-value of Welch's t-test; NaN with fewer than two values a side or no spread."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per arm: mean and std of each metric over done runs, seeds done, runs incomplete, and
    for quality metrics the p-value against the first arm (the recipe)."""
    metrics = metrics or metric_columns(frame)
    done = frame[frame["status"] == "done"]
    arms = list(dict.fromkeys(frame["arm"]))  # first-seen order: the recipe first
    recipe = done[done["arm"] == arms[0]]
    rows = []
    for arm in arms:
        runs = done[done["arm"] == arm]
        incomplete = int(((frame["arm"] == arm) & (frame["status"] != "done")).sum())
        row = {"arm": arm, "seeds": len(runs), "incomplete": incomplete}
        for metric in metrics:
            values = runs[metric].dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else None
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else None
            if metric in QUALITY_METRICS and arm != arms[0]:
                row[f"{metric}_p"] = welch_p(values, recipe[metric].dropna())
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(row, metrics: list[str]) -> str:
    """Which quality metrics differ from the recipe beyond seed noise, and in which direction."""
    tested = [m for m in metrics if m in QUALITY_METRICS and not pd.isna(row.get(f"{m}_p", float("nan")))]
    if not tested:
        return "-"
    marks = []
    for m in tested:
        if row[f"{m}_p"] < ALPHA:
            better = (row[f"{m}_mean"] < row.get(f"{m}_recipe", np.nan)) == QUALITY_METRICS[m].lower_is_better
            marks.append(f"{LABELS[m].split(' ')[0]} {'better' if better else 'worse'} (p={row[f'{m}_p']:.2g})")
    return "; ".join(marks) or f"no (all p >= {ALPHA})"


def _cell(mean, std, kind) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    if std is None or pd.isna(std) or (std == 0 and kind in ("params", "gflops")):  # one seed, or fixed by the arm
        return human(mean, kind)
    return f"{human(mean, kind)} ± {human(std, kind)}"


def render(summary: pd.DataFrame, metrics: list[str], calibration: dict | None = None) -> tuple[str, str]:
    """(markdown, latex) of a summary, with the calibration's data and noise rows when given."""
    floor = (calibration or {}).get("data") or {}
    ratio = "swd" in metrics and floor.get("swd")
    first = summary["arm"].iloc[0] if len(summary) else "first arm"
    header = ["arm", "seeds", *[LABELS.get(m, m) for m in metrics], *(["SWD / floor"] if ratio else []),
              f"vs {first}", "incomplete"]
    summary = summary.copy()
    for m in metrics:  # the recipe's mean beside every row, for the direction of a difference
        summary[f"{m}_recipe"] = summary[f"{m}_mean"].iloc[0] if len(summary) else None
    body = []
    for i, r in summary.iterrows():
        cells = [r["arm"], str(r["seeds"]), *[_cell(r[f"{m}_mean"], r[f"{m}_std"], m) for m in metrics]]
        if ratio:
            cells.append(human(r["swd_mean"] / floor["swd"]) if not pd.isna(r["swd_mean"]) else "-")
        cells += ["(reference)" if i == summary.index[0] else verdict(r, metrics), str(r["incomplete"])]
        body.append(cells)
    for name, values in (("data (real vs real)", calibration and calibration.get("data")),
                         ("noise", calibration and calibration.get("noise"))):
        if values:
            cells = [name, "", *[human(values[m]) if m in values else "" for m in metrics]]
            if ratio:
                cells.append(human(values["swd"] / floor["swd"]))
            body.append(cells + ["", ""])
    markdown = "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                         + ["| " + " | ".join(row) + " |" for row in body])
    escape = lambda s: str(s).replace("_", r"\_").replace("±", r"$\pm$").replace("%", r"\%")  # noqa: E731
    latex = "\n".join([r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                       " & ".join(escape(h) for h in header) + r" \\", r"\midrule",
                       *[" & ".join(escape(c) for c in row) + r" \\" for row in body],
                       r"\bottomrule", r"\end{tabular}"])
    return markdown, latex


def caption(frame: pd.DataFrame, calibration: dict | None) -> str:
    parts = ["Mean ± std over seeds (sample std). 'vs': Welch's two-sided t-test over seeds against the first "
             f"row (the recipe), listed where p < {ALPHA} (with 2 seeds a side only large, consistent differences "
             "pass)."]
    if "num_samples" in frame.columns and frame["num_samples"].notna().any():
        parts.append(f"Quality on {int(frame['num_samples'].dropna().iloc[0])} samples per run.")
    if calibration:
        parts.append(f"'data': {calibration['floor_set']} against {calibration['reference']} (the floor); "
                     "'noise': Gaussian noise against them (the ceiling).")
        if calibration.get("classifier"):
            c = calibration["classifier"]
            parts.append(f"Shape classifier held-out accuracy: {c['held_out_accuracy']:.3f} ({c['held_out']}).")
    return " ".join(parts)


def study_calibration(study_dir: Path) -> dict | None:
    """The calibration for a study's data and sample count (from any run's point.json), if it has one."""
    from analysis.quality import calibration

    for spec in sorted(study_dir.glob("*/point.json")):
        settings = json.loads(spec.read_text()).get("settings", {})
        if settings.get("metric") == "swd" and settings.get("num_samples"):
            return calibration(settings["data"], settings["resolution"], settings["num_samples"])
    return None


def write_tables(study_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    study_dir = Path(study_dir)
    out_dir = Path(out_dir or study_dir)
    frame = collect_study(study_dir)
    metrics = metric_columns(frame)
    summary = summarize(frame, metrics)
    calib = study_calibration(study_dir)
    markdown, latex = render(summary, metrics, calib)
    paths = {"md": out_dir / "table.md", "tex": out_dir / "table.tex", "csv": out_dir / "table.csv",
             "runs": out_dir / "runs.csv"}
    paths["md"].write_text(markdown + "\n\n" + caption(frame, calib) + "\n")
    paths["tex"].write_text(latex + "\n")
    summary.to_csv(paths["csv"], index=False)
    frame.to_csv(paths["runs"], index=False)
    if calib:
        (out_dir / "calibration.json").write_text(json.dumps(calib, indent=2))
    return paths
