"""The paper's claims beside what this harness measures: published, measured here, and a verdict.

    python -m analysis paper                       # Markdown, from results/ and the checked-in records
    python -m analysis paper --format tex --out results/paper_tables

Every published number comes from one data file, ``analysis/metrics/paper_claims.json``, with the place in
the paper it comes from. Measurements come from records, except the rebuilt GFLOPs:

- efficiency: the profile records (``results/profile/``, else the checked-in
  ``results/reference/profile/``), the GPU check (``results/gpu/gpu_check.json``) when one ran,
  the models' analytic FLOP formulas for the text-conditioned GFLOPs, and the published GFLOPs
  rebuilt from our models by calflops' rules (``analysis.metrics.flop_conventions``; about half a minute,
  counted live);
- quality (FID): a finished ``paper`` study with FID (``results/paper``);
- quality and costs at laptop scale: the ``paper`` study at its ``cpu`` scale (the T sizes on the
  embedded 16 px data; ``results/paper``, else the checked-in ``results/reference/paper/cpu/runs.csv``),
  each rival compared seed by seed with USM on the same dataset (``analysis.report.tables.summarize``);
- ablation: the ``ablations`` study (``results/ablations``), else the checked-in per-run records of
  its ``cpu`` scale (``results/reference/ablations/cpu/runs.csv``).

A verdict is ``agrees`` (within the tolerance), ``same direction`` (USM better in both, by another
amount), ``differs``, or ``not measured yet`` with what it needs. Each row says how and on what
device the number was measured, so a CPU time is never read as the paper's GPU time.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from analysis.metrics.claims import PAPER_MODELS, load_claims
from usm.markdown import latex
from usm.markdown import table as markdown_table
from usm.provenance import UNRECORDED, stamp, stamp_line

TOLERANCE = {"gflops": 0.10, "ratio": 0.15, "fid": 0.15}


@dataclass
class Row:
    table: str
    claim: str
    published: str
    measured: str
    how: str
    verdict: str


def _fmt(value: float) -> str:
    if abs(value) < 10:
        return f"{value:.3g}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def verdict(measured: float, published: float, tolerance: float, same_direction: bool | None = None) -> str:
    if abs(measured / published - 1) <= tolerance:
        return "agrees"
    if same_direction:
        return "same direction, differs in size"
    return "differs"


# --------------------------------------------------------------------------------------------------
# Records

def profile_records(results: Path, reference: Path) -> tuple[list[dict], Path | None]:
    for folder in (results / "profile", reference / "profile"):
        records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        if records:
            return records, folder
    return [], None


def gpu_report(results: Path) -> dict | None:
    path = results / "gpu" / "gpu_check.json"
    return json.loads(path.read_text()) if path.exists() else None


def text_gflops(name: str) -> float:
    """Forward GFLOPs of a registered model with text conditioning (77 tokens of 768, CLIP's shape),
    from its analytic formula, built on the meta device (no weights)."""
    import torch

    from usm.models.registry import build_model

    with torch.device("meta"):
        model = build_model(name, has_text=True, d_context=768)
    return model.flop_formula(batch=1, context_tokens=77)["total"] / 1e9


# --------------------------------------------------------------------------------------------------
# Tables

@dataclass
class Records:
    """Everything the report reads, read once: profile records, the GPU check, the ``paper`` study (FID),
    the laptop comparison's runs and the ablation study's runs, each with where it came from."""
    profile: list[dict]
    profile_folder: Path | None
    gpu: dict | None
    study: object  # DataFrame | None: the paper study in RESULTS/paper
    study_folder: Path
    laptop: object  # DataFrame | None
    laptop_source: str | None
    ablation: object  # DataFrame | None
    ablation_source: str

    @classmethod
    def read(cls, results: Path, reference: Path) -> Records:
        profile, folder = profile_records(results, reference)
        study = _study_frame(results / "paper")
        laptop, laptop_source = laptop_frame(study, results, reference)
        ablation, ablation_source = ablation_frame(results, reference)
        return cls(profile, folder, gpu_report(results), study, results / "paper", laptop, laptop_source,
                   ablation, ablation_source)

    def stamps(self) -> list[str]:
        """The code every number was measured on: each record's stamp (``study:NAME@unrecorded`` for
        runs from before runs named their code), and the FLOP counter's, which counts live."""
        found = [r.get("code", f"profile@{UNRECORDED}") for r in self.profile] + [stamp("flops")]
        for frame, study in ((self.laptop, "paper"), (self.ablation, "ablations")):
            if frame is not None:
                codes = frame["code"].dropna() if "code" in frame else []
                found += [s for text in codes for s in str(text).split()] or [f"study:{study}@{UNRECORDED}"]
        return list(dict.fromkeys(found))


def efficiency_rows(claims: list[dict], records: Records) -> list[Row]:
    at_256 = {r["model"]: r for r in records.profile if r["image_size"] == 256}
    folder, gpu = records.profile_folder, records.gpu
    rows = []
    for claim in (c for c in claims if c["table"] == "efficiency"):
        if claim["id"] == "gflops-uncond":
            rows += _gflops_rows(claim, {m: at_256[n]["gflops"] for m, n in PAPER_MODELS.items() if n in at_256},
                                 f"multiply-adds: fvcore count with the scan at 9*B*L*D*N ({folder})")
            rows += _rebuilt_rows(claim, text=False)
        elif claim["id"] == "gflops-text":
            rows += _gflops_rows(claim, {m: text_gflops(n) for m, n in PAPER_MODELS.items()},
                                 "multiply-adds: analytic formula (equal to the fvcore count in the tests), "
                                 "77 tokens of 768")
            rows += _rebuilt_rows(claim, text=True)
        elif claim["id"] in RATIO_SOURCES:
            rows.append(_ratio_row(claim, at_256, gpu))
            rows += _laptop_ratio_rows(claim, records)
    return rows


# claim id -> the laptop comparison's per-run column that gives it, and how it was measured
LAPTOP_RATIOS = {"speed": ("train_images_per_s", "training images/s on one CPU core ({device}), T sizes, 16 px, "
                                                 "batch 8, measured in each run of the laptop comparison ({source})"),
                 "memory": ("activation_mib", "activation memory of a training step (bytes saved for backward), "
                                              "T sizes, 16 px, batch 8, the laptop comparison ({source})")}


def _laptop_ratio_rows(claim: dict, records: Records) -> list[Row]:
    frame, source = records.laptop, records.laptop_source
    column, how = LAPTOP_RATIOS[claim["id"]]
    if frame is None or column not in frame:
        return []
    done = frame[frame["status"] == "done"]
    means = done.groupby("axis.model")[column].mean()
    if not {"USM", "ZigMa"} <= set(means.dropna().index):
        return []
    value = means["USM"] / means["ZigMa"]
    device = ", ".join(sorted(done["device"].dropna().unique())) if "device" in done else "unknown device"
    return [Row("efficiency", f"{claim['what']}, laptop comparison (x = USM-T/1 / ZigMa-T/1)", _range(claim),
                f"{value:.2f}", how.format(device=device, source=source),
                _range_verdict(value, claim) + " (a CPU core and 16 px, not the paper's GPU and 256 px)")]


def _gflops_rows(claim: dict, measured: dict, how: str) -> list[Row]:
    rows = []
    for model, published in claim["models"].items():
        if model not in measured:
            rows.append(Row("efficiency", f"{claim['what']}: {model}", _fmt(published), "-", how,
                            "not measured yet: run python -m analysis profile"))
            continue
        value = measured[model]
        rows.append(Row("efficiency", f"{claim['what']}: {model}", _fmt(published), _fmt(value),
                        how, verdict(value, published, TOLERANCE["gflops"])
                        + f" ({value / published:.2f}x the published value; another convention: the rebuilt "
                        "row below reproduces it)"))
    if len(measured) == 2:
        published = claim["models"]["USM"] / claim["models"]["ZigMa"]
        value = measured["USM"] / measured["ZigMa"]
        rows.append(Row("efficiency", f"{claim['what']}: USM / ZigMa", f"{published:.2f}", f"{value:.2f}", how,
                        verdict(value, published, TOLERANCE["ratio"], same_direction=value < 1 and published < 1)))
    return rows


REBUILT_TOLERANCE = 0.005  # a count rebuilt by a rule should land on the published value, not near it


def _rebuilt_rows(claim: dict, text: bool) -> list[Row]:
    """The published GFLOPs rebuilt from our models by calflops' rules and the released code's
    differences (``analysis.metrics.flop_conventions``), and the USM / ZigMa ratio under every convention."""
    from analysis.metrics.flop_conventions import CONVENTION_NAMES, RULES, conventions

    counts = {m: conventions(n, text) for m, n in PAPER_MODELS.items()}
    rows = []
    for model, published in claim["models"].items():
        value = counts[model]["published_rebuilt"]
        error = value / published - 1
        rows.append(Row("efficiency", f"{claim['what']}: {model}, calflops on the released code, rebuilt",
                        f"{published:.2f}", f"{value:.2f}", RULES[model].words,
                        ("agrees" if abs(error) <= REBUILT_TOLERANCE else "differs") + f" ({error:+.3%})"))
    published = claim["models"]["USM"] / claim["models"]["ZigMa"]
    ratios = "; ".join(f"{CONVENTION_NAMES[k]} {counts['USM'][k] / counts['ZigMa'][k]:.2f}"
                       for k in ("macs", "macs_no_scan", "flops_no_scan", "calflops", "published_rebuilt"))
    full = [counts["USM"][k] / counts["ZigMa"][k] for k in ("macs", "macs_no_scan", "flops_no_scan", "calflops")]
    rows.append(Row("efficiency", f"{claim['what']}: USM / ZigMa under each convention", f"{published:.2f}",
                    ratios, "the same two forward passes counted five ways (python -m analysis flops --conventions)",
                    f"every count of the whole model gives {min(full):.2f}-{max(full):.2f}; the published "
                    f"{published:.2f} is the rebuilt count's, which leaves out USM's mixer projections: "
                    "an artefact of what was counted, not of the architectures"))
    return rows


def _range(claim: dict) -> str:
    low, high = claim["ratio_range"]
    return f"{low:.2f}-{high:.2f}"


def _range_verdict(value: float, claim: dict) -> str:
    low, high = claim["ratio_range"]
    if low * (1 - TOLERANCE["ratio"]) <= value <= high * (1 + TOLERANCE["ratio"]):
        return "agrees"
    usm_better = value > 1 if claim["higher_is_better"] else value < 1
    return "same direction, differs in size" if usm_better else "differs"


# claim id -> (GPU check key, how; profile record key, how), each a ratio USM / ZigMa
RATIO_SOURCES = {
    "speed": ("train_steps_per_s", "training steps/s, 256 px, batch 8, bf16, {device} (GPU check)",
              "train_steps_per_s", "training steps/s, 256 px, batch 1, {device} (CPU, not the paper's GPU)"),
    "memory": ("peak_memory_gib", "peak GPU memory of a training step, batch 8, bf16, {device} (GPU check)",
               "activation_bytes", "activation memory of a training step (bytes saved for backward, any "
                                   "device), 256 px, {device}"),
}


def _usm_over_zigma(by_model: dict, key: str) -> float | None:
    usm, zigma = (by_model.get(PAPER_MODELS[m], {}).get(key) for m in ("USM", "ZigMa"))
    return usm / zigma if usm and zigma else None


def _ratio_row(claim: dict, at_256: dict, gpu: dict | None) -> Row:
    gpu_key, gpu_how, cpu_key, cpu_how = RATIO_SOURCES[claim["id"]]
    name = f"{claim['what']} (x = USM / ZigMa)"
    if gpu:
        value = _usm_over_zigma({r["model"]: r for r in gpu.get("training", [])}, gpu_key)
        if value is not None:
            return Row("efficiency", name, _range(claim), f"{value:.2f}", gpu_how.format(device=gpu["device"]),
                       _range_verdict(value, claim))
    value = _usm_over_zigma(at_256, cpu_key)
    if value is not None:
        device = at_256[PAPER_MODELS["USM"]].get("device_name", "unknown device")
        return Row("efficiency", name, _range(claim), f"{value:.2f}", cpu_how.format(device=device),
                   _range_verdict(value, claim) + "; on a GPU: not measured yet (python -m analysis gpu-check)")
    return Row("efficiency", name, _range(claim), "-", "-",
               "not measured yet: python -m analysis profile, or python -m analysis gpu-check on a GPU")


def quality_rows(claims: list[dict], records: Records) -> list[Row]:
    frame = records.study
    rows = []
    for claim in (c for c in claims if c["table"] == "quality"):
        if claim["id"] == "quality-laptop":
            rows += laptop_rows(claim, records)
            continue
        published = " vs ".join(f"{m} {v}" for m, v in claim["models"].items())
        measured = {}
        if frame is not None and "fid" in frame and "axis.dataset" in frame:
            done = frame[(frame["status"] == "done") & (frame["axis.dataset"] == claim["dataset"])]
            measured = done.groupby("axis.model")["fid"].mean().to_dict()
        if not {"USM", "ZigMa"} <= set(measured):
            rows.append(Row("quality", claim["what"], published, "-", "-",
                            "not measured yet: needs the dataset, SD-VAE and Inception weights and a GPU "
                            "(python experiments/run.py --grid paper --scale paper ...)"))
            continue
        gap, published_gap = measured["ZigMa"] - measured["USM"], claim["models"]["ZigMa"] - claim["models"]["USM"]
        rows.append(Row("quality", claim["what"], published,
                        f"USM {measured['USM']:.2f} vs ZigMa {measured['ZigMa']:.2f}",
                        f"FID (torch-fidelity, Inception 2015-12-05) of the study in {records.study_folder}",
                        verdict(measured["USM"], claim["models"]["USM"], TOLERANCE["fid"], same_direction=gap > 0)
                        + f"; gap {gap:+.2f} (published {published_gap:+.2f})"))
    return rows


LAPTOP_RUNS = "paper/cpu/runs.csv"  # the checked-in per-run records of the laptop-scale comparison
LAPTOP_HOW = ("the paper grid at cpu scale: the T sizes at equal parameter counts, 16 px embedded data, one recipe "
              "for all, the final samples of each run ({source}); a pixel-space proxy, not FID")


def laptop_frame(study, results: Path, reference: Path):
    """(runs of the laptop-scale comparison, where they come from), or (None, None): the ``paper`` study's
    (``study``, read from ``results/paper``) finished runs on embedded data, else the checked-in records."""
    import pandas as pd

    from usm.data.embedded import EMBEDDED

    frame, source = study, f"{results / 'paper'}"
    if frame is None or "data" not in frame or not frame["data"].isin(list(EMBEDDED)).any():
        path = reference / LAPTOP_RUNS
        frame, source = (pd.read_csv(path), str(path)) if path.exists() else (None, None)
    if frame is None:
        return None, None
    return frame[frame["data"].isin(list(EMBEDDED))].reset_index(drop=True), source


def _compared_metric(row) -> str | None:
    """The first headline metric the comparison has, else pixel precision (unvalidated: marked)."""
    from analysis.metrics.quality import HEADLINE

    return next((m for m in (*HEADLINE, "precision") if not _missing(row.get(f"{m}_diff"))), None)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def laptop_rows(claim: dict, records: Records) -> list[Row]:
    """Per dataset and rival: USM against the rival trained alike, on a validated pixel-space metric."""
    from analysis.metrics.quality import QUALITY_METRICS
    from analysis.report.tables import summarize

    frame, source = records.laptop, records.laptop_source
    done = frame[frame["status"] == "done"] if frame is not None else None
    if done is None or done.empty:
        return [Row("quality", claim["what"], "USM better", "-", "-",
                    "not measured yet: python experiments/run.py --grid paper --scale cpu")]
    summary = summarize(frame).set_index("arm")
    arms = frame.drop_duplicates("arm").set_index(["data", "axis.model"])["arm"]
    rows = []
    for dataset in dict.fromkeys(frame["data"]):
        for rival, published in claim["rivals"].items():
            if (dataset, rival) not in arms.index or (dataset, claim["better"]) not in arms.index:
                continue
            r = summary.loc[arms[(dataset, rival)]]
            metric = _compared_metric(r)
            what = f"{claim['what']}, {dataset}: USM vs {rival}"
            if metric is None:
                rows.append(Row("quality", what, published, "-", LAPTOP_HOW.format(source=source),
                                "not measured yet: the runs of both are not finished"))
                continue
            rows.append(_laptop_row(what, published, rival, metric, r, summary.loc[r["reference"]], source,
                                    QUALITY_METRICS[metric]))
    return rows


def _laptop_row(what, published, rival, metric, r, usm, source, spec) -> Row:
    from analysis.metrics.quality import HEADLINE

    label = spec.label + ("" if metric in HEADLINE else " (unvalidated)")
    measured = (f"{label}: USM {_fmt(usm[f'{metric}_mean'])} vs {rival} {_fmt(r[f'{metric}_mean'])}; "
                f"{rival} - USM {_fmt(r[f'{metric}_diff'])}")
    if not _missing(r[f"{metric}_low"]):
        measured += f", paired 95% interval [{_fmt(r[f'{metric}_low'])}, {_fmt(r[f'{metric}_high'])}]"
    measured += f", {int(r['seeds'])} seeds"
    outcome = r[f"{metric}_outcome"]  # the rival's: better / worse than USM, or inconclusive
    if outcome == "inconclusive":
        needed = r[f"{metric}_seeds_needed"]
        word = "inconclusive" + ("" if _missing(needed) or math.isinf(needed)
                                 else f": about {int(needed)} seeds would resolve it")
    elif outcome not in ("better", "worse"):
        word = f"not compared yet ({outcome})"
    else:
        usm_better = outcome == "worse"
        word = ("USM better" if usm_better else f"{rival} better") + (
            "" if rival != "ZigMa" else ": agrees in direction" if usm_better else ": differs in direction")
    return Row("quality", what, published, measured, LAPTOP_HOW.format(source=source), word)


def _study_frame(folder: Path):
    if not folder.is_dir():
        return None
    from analysis.report.collect import collect_study

    try:
        return collect_study(folder)
    except FileNotFoundError:
        return None


def ablation_frame(results: Path, reference: Path):
    """(the ablation study's runs, where they come from): ``results/ablations``, else the checked-in
    per-run records of the ``cpu`` scale (five seeds of the arms the paper's table names)."""
    import pandas as pd

    frame = _study_frame(results / "ablations")
    if frame is not None and "swd" in frame:
        return frame, f"the ablations study in {results / 'ablations'}"
    path = reference / ABLATION_RUNS
    return (pd.read_csv(path) if path.exists() else None), f"the checked-in cpu-scale study ({path})"


ABLATION_RUNS = "ablations/cpu/runs.csv"


def ablation_rows(claims: list[dict], records: Records) -> list[Row]:
    frame, source = records.ablation, records.ablation_source
    rows = []
    for claim in (c for c in claims if c["table"] == "ablation"):
        published = " -> ".join(f"{arm} {v}" for arm, v in claim["arms"].items())
        if frame is None:
            rows.append(Row("ablation", claim["what"], published, "-", "-",
                            "not measured yet: python experiments/run.py --grid ablations"))
            continue
        rows.append(_ablation_row(claim, frame, published, source))
    return rows


def _ablation_row(claim: dict, frame, published: str, source: str) -> Row:
    """FID where the study measured it; else the study's first headline metric (a validated proxy),
    compared seed by seed with the same paired interval as the study's comparisons.md (``summarize``:
    the seeds' spread and each run's sampling spread): a direction only where it excludes zero."""
    from analysis.metrics.quality import HEADLINE, QUALITY_METRICS
    from analysis.report.tables import summarize

    arms = list(claim["arms"])
    done = frame[frame["status"] == "done"]
    metric = "fid" if "fid" in done else next((m for m in HEADLINE if m in done), "swd")
    label = "FID" if metric == "fid" else QUALITY_METRICS[metric].label
    if any(done.loc[done["arm"] == arm, metric].dropna().empty for arm in arms):
        return Row("ablation", claim["what"], published, "-", source, f"not measured yet: arms {arms} not finished")
    summary = summarize(frame[frame["arm"].isin(arms)], [metric]).set_index("arm")
    r = summary.loc[arms[1]]
    if r["reference"] != arms[0]:
        raise ValueError(f"the ablation study's reference arm is {r['reference']}, the claim's {arms[0]}")
    lower_is_better = metric == "fid" or QUALITY_METRICS[metric].lower_is_better
    means = {arm: summary.loc[arm, f"{metric}_mean"] for arm in arms}
    worse = (means[arms[1]] > means[arms[0]]) == lower_is_better
    published_worse = claim["arms"][arms[1]] > claim["arms"][arms[0]]
    low, high = r.get(f"{metric}_low"), r.get(f"{metric}_high")
    interval = "" if _missing(low) else f", paired 95% interval of the difference [{_fmt(low)}, {_fmt(high)}]"
    details = f"{label}, {int(r['seeds'])} seeds{interval}: {r[f'{metric}_outcome']}"
    measured = " -> ".join(f"{arm} {_fmt(means[arm])}" for arm in arms) + f" ({details})"
    if metric != "fid":
        word = "agrees in direction" if worse == published_worse else "differs in direction"
        if r[f"{metric}_outcome"] not in ("better", "worse"):
            way = "the paper's way" if worse == published_worse else "the other way"
            word = f"{r[f'{metric}_outcome']} at {int(r['seeds'])} seeds (the means point {way})"
        return Row("ablation", claim["what"], published, measured, f"{source}: {label}, not FID",
                   f"{word} (a small-scale proxy, not the paper's FID)")
    return Row("ablation", claim["what"], published, measured, source,
               verdict(means[arms[1]], claim["arms"][arms[1]], TOLERANCE["fid"], same_direction=worse))


# --------------------------------------------------------------------------------------------------
# The report

def read_records(results: str | Path = "results", reference: str | Path | None = None) -> Records:
    results = Path(results)
    return Records.read(results, Path(reference) if reference else results / "reference")


def paper_rows(results: str | Path = "results", reference: str | Path | None = None) -> list[Row]:
    return rows_of(read_records(results, reference))


def rows_of(records: Records) -> list[Row]:
    claims = load_claims()["claims"]
    return efficiency_rows(claims, records) + quality_rows(claims, records) + ablation_rows(claims, records)


TITLES = {"efficiency": "Efficiency (USM-B/1 vs ZigMa-B/1, 256 px; the T sizes at 16 px where a row says so)",
          "quality": "Image quality (FID; at laptop scale, a pixel-space proxy)",
          "ablation": "Ablation"}
COLUMNS = ["claim", "published", "measured", "how", "verdict"]


def render(rows: list[Row], fmt: str = "md", stamps: list[str] = ()) -> str:
    """The claims as Markdown (one table per section, the stamps of the code they were measured on
    last), LaTeX or CSV."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["table", *COLUMNS])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
        return out.getvalue()
    parts = []
    for table, title in TITLES.items():
        chosen = [r for r in rows if r.table == table]
        if fmt == "tex":
            parts.append(f"% {title}\n" + latex([c.capitalize() for c in COLUMNS],
                                                [[getattr(r, c) for c in COLUMNS] for r in chosen]))
        else:
            cells = [[getattr(r, c) for c in COLUMNS] for r in chosen]
            parts.append(f"### {title}\n\n" + markdown_table(COLUMNS, cells))
    source = load_claims()["paper"]
    footer = (f"Published values: {source} (analysis/metrics/paper_claims.json says where in the paper each "
              "comes from). "
              f"'agrees': within {TOLERANCE['gflops']:.0%} for counts, {TOLERANCE['ratio']:.0%} for ratios and "
              f"{TOLERANCE['fid']:.0%} for FID; a count rebuilt by a written rule, within "
              f"{REBUILT_TOLERANCE:.1%}.")
    code = "\n\n" + stamp_line(stamps) if stamps else ""
    return "\n\n".join(parts) + ("\n\n" + footer + code + "\n" if fmt == "md" else "\n")


# The README's short form: the rows a reader checks first (claim prefixes), verdicts to their first clause.
SUMMARY = ("GFLOPs, unconditional, 256 px: USM / ZigMa", "GFLOPs, unconditional, 256 px: USM, calflops",
           "speed, USM relative to ZigMa", "memory, USM relative to ZigMa", "FID, AFHQ",
           "image quality at laptop scale", "skip connections removed")


def first_clause(text: str) -> str:
    """``text`` up to its first ': ' or '; ' outside parentheses."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char in ":;" and text[i + 1: i + 2] == " ":
            return text[:i]
    return text


def render_summary(rows: list[Row], stamps: list[str] = ()) -> str:
    """A short Markdown table of the SUMMARY rows (claim, published, measured, verdict)."""
    chosen = [r for r in rows if r.claim.startswith(SUMMARY) and not r.claim.endswith("under each convention")]
    table = markdown_table(["claim", "published", "measured here", "verdict"],
                           [[r.claim, r.published, r.measured, first_clause(r.verdict)] for r in chosen])
    return table + ("\n\n" + stamp_line(stamps) if stamps else "")
