"""Study tables: mean and spread over seeds per arm, as Markdown, LaTeX (booktabs) and CSV.

    python -m analysis table --study ablations [--results results]

Each metric column reads ``mean ± std (n)`` over the arm's completed runs (std over seeds; no
``±`` with one seed). Incomplete runs are counted in their own column, not averaged.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.collect import collect_study

NON_METRICS = {"run", "order", "arm", "seed", "model", "status", "why", "step", "max_steps"}


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in NON_METRICS and not c.startswith("axis.")
            and pd.api.types.is_numeric_dtype(frame[c])]


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per arm: mean and std of each metric over done runs, seeds done, runs incomplete."""
    metrics = metrics or metric_columns(frame)
    done = frame[frame["status"] == "done"]
    rows = []
    for arm in dict.fromkeys(frame["arm"]):  # first-seen order
        runs = done[done["arm"] == arm]
        row = {"arm": arm, "seeds": len(runs), "incomplete": int(((frame["arm"] == arm) & (frame["status"] != "done")).sum())}
        for metric in metrics:
            values = runs[metric].dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else None
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else None
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean, std, digits=4) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    return f"{mean:.{digits}g}" if std is None or pd.isna(std) else f"{mean:.{digits}g} ± {std:.{digits}g}"


def render(summary: pd.DataFrame, metrics: list[str]) -> tuple[str, str]:
    """(markdown, latex) of a summary."""
    header = ["arm", *metrics, "seeds", "incomplete"]
    body = [[r["arm"], *[_cell(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics], str(r["seeds"]), str(r["incomplete"])]
            for _, r in summary.iterrows()]
    markdown = "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                         + ["| " + " | ".join(row) + " |" for row in body])
    escape = lambda s: str(s).replace("_", r"\_").replace("±", r"$\pm$").replace("%", r"\%")  # noqa: E731
    latex = "\n".join([r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                       " & ".join(escape(h) for h in header) + r" \\", r"\midrule",
                       *[" & ".join(escape(c) for c in row) + r" \\" for row in body],
                       r"\bottomrule", r"\end{tabular}"])
    return markdown, latex


def write_tables(study_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    study_dir = Path(study_dir)
    out_dir = Path(out_dir or study_dir)
    frame = collect_study(study_dir)
    metrics = metric_columns(frame)
    summary = summarize(frame, metrics)
    markdown, latex = render(summary, metrics)
    paths = {"md": out_dir / "table.md", "tex": out_dir / "table.tex", "csv": out_dir / "table.csv",
             "runs": out_dir / "runs.csv"}
    paths["md"].write_text(markdown + "\n")
    paths["tex"].write_text(latex + "\n")
    summary.to_csv(paths["csv"], index=False)
    frame.to_csv(paths["runs"], index=False)
    return paths
