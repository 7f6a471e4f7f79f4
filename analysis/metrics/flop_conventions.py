"""One model's forward FLOPs under every counting convention in use, and the paper's GFLOPs rebuilt.

    python -m analysis flops --conventions              # USM-B/1 and ZigMa-B/1, unconditional and text

A FLOP count is a convention before it is a number. For the same forward pass (batch 1, a 32x32x4
latent) this reports:

- ``macs``: multiply-adds, every matrix product and convolution, norms, the scan at 9*L*D*N
  (fvcore's convention, which DiT's published GFLOPs use; ``analysis.metrics.flops``), and ``macs_no_scan``;
- ``flops``: 2 FLOPs per multiply-add, and ``flops_no_scan``;
- ``calflops``: what calflops 0.3.2 counts on our code (``analysis.metrics.calflops_view``): the published
  GFLOPs of the USM paper come from it, run on the released code;
- ``published_rebuilt``: calflops' count rebuilt for the released code from ours, by a written rule
  (``RULES``): the modules the released code writes so that calflops counts them differently from
  ours, and the modules the published number leaves out.

The rules, with what fixes them (docs/metrics.md has the arithmetic):
- ZigMa (released code): its mixer's ``in_proj`` is written ``W @ x`` and its causal conv1d (with
  its SiLU) is a CUDA kernel, so calflops sees neither; our ``dt_proj`` is an ``@`` as theirs is.
- USM (released code): its ``dt_proj`` is a ``torch.einsum``, which calflops counts (ours is an
  ``@``, which it does not). The published USM numbers are then the count without both projections
  of the Mamba mixer (``in_proj``, ``out_proj``): one rule, the same modules, lands on both the
  unconditional and the text-conditioned value.
"""

from __future__ import annotations

import collections
import functools
import re
from dataclasses import dataclass

from analysis.metrics.claims import PAPER_MODELS, load_claims
from usm.markdown import table as markdown_table
from usm.provenance import stamp, stamp_line


@dataclass(frozen=True)
class Rule:
    """How calflops' count of the released code follows from its count of ours."""

    add_unseen: tuple[str, ...]  # modules whose products calflops misses here but counts there
    drop: tuple[tuple[str, str], ...]  # (module, kind) it counts here but the published number has not
    words: str


RULES = {
    "ZigMa": Rule(add_unseen=(), drop=(("mixer.in_proj", "linear"), ("mixer.conv1d", "conv"), ("mixer", "activation")),
                  words="calflops' rules (2 FLOPs per multiply-add of F.linear and convolutions, 1 per activation, "
                        "4-5 per norm element; no @, no attention, no CUDA or Triton kernels) on our ZigMa, without "
                        "the mixer's in_proj (the released code writes it W @ x) and its causal conv1d and SiLU "
                        "(a CUDA kernel there)"),
    "USM": Rule(add_unseen=("mixer.ssm.dt_proj",), drop=(("mixer.in_proj", "linear"), ("mixer.out_proj", "linear")),
                words="calflops' rules on our USM, with the mixer's dt_proj counted (the released code writes it "
                      "as an einsum, which calflops counts), without both projections of the Mamba mixer "
                      "(in_proj, out_proj): the published numbers leave them out"),
}


def _matches(module: str, suffix: str) -> bool:
    return module == suffix or module.endswith("." + suffix)


def matched_modules(rule: Rule, ops) -> dict:
    """The modules of ``ops`` (``analysis.metrics.calflops_view.calflops_ops``) that each part of ``rule``
    names: {"added": {suffix: modules}, "dropped": {"suffix (kind)": modules}}, modules sorted."""
    def found(seen: bool, suffix: str, kind: str | None) -> list[str]:
        return sorted({op.module for op in ops if op.seen == seen and _matches(op.module, suffix)
                       and kind in (None, op.kind)})

    return {"added": {m: found(False, m, None) for m in rule.add_unseen},
            "dropped": {f"{m} ({k})": found(True, m, k) for m, k in rule.drop}}


def breakdown(ops) -> dict:
    """calflops' count by module (block indices folded into ``*``) and by kind, in GFLOPs, plus the
    products it does not see (``unseen``), each sorted from the largest."""
    def grouped(key, seen: bool) -> dict:
        totals = collections.Counter()
        for op in ops:
            if op.seen == seen:
                totals[key(op)] += op.flops / 1e9
        return dict(totals.most_common())

    return {"by_module": grouped(lambda op: _folded(op.module), True), "by_kind": grouped(lambda op: op.kind, True),
            "unseen": grouped(lambda op: f"{_folded(op.module)} ({op.kind})", False)}


def _folded(module: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", module) or "(model)"


def family(name: str) -> str:
    return name.split("-")[0]


@functools.lru_cache(maxsize=None)
def conventions(name: str, text: bool = False) -> dict:
    """GFLOPs of ``name`` (32x32x4 latent, batch 1; text: 77 tokens of 768) under every convention,
    plus the calflops operators the rule leaves out or puts back, by module.

    The multiply-adds come from the model's analytic formula (equal to fvcore's count in
    tests/test_flops_counter.py); calflops' view runs one forward (two passes)."""
    import torch

    from analysis.metrics.calflops_view import calflops_ops
    from analysis.metrics.flops import example_cond
    from usm.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(name, **({"has_text": True, "d_context": 768} if text else {}))
    macs = model.flop_formula(batch=1, context_tokens=77)
    ops = calflops_ops(model, torch.randn(1, 4, 32, 32), torch.rand(1), example_cond(model))
    total, scan = macs["total"] / 1e9, macs.get("scan", 0) / 1e9
    out = {"model": name, "text": text, "macs": total, "macs_no_scan": total - scan,
           "flops": 2 * total, "flops_no_scan": 2 * (total - scan),
           "calflops": sum(op.flops for op in ops if op.seen) / 1e9, **breakdown(ops)}
    rule = RULES.get(family(name))
    if rule is not None:
        matched = matched_modules(rule, ops)
        added = {m: sum(op.flops for op in ops if not op.seen and op.module in found) / 1e9
                 for m, found in matched["added"].items()}
        dropped = {f"{m} ({k})": sum(op.flops for op in ops if op.seen and op.kind == k
                                     and op.module in matched["dropped"][f"{m} ({k})"]) / 1e9 for m, k in rule.drop}
        out["published_rebuilt"] = out["calflops"] + sum(added.values()) - sum(dropped.values())
        out["rule"] = {"added": added, "dropped": dropped, "words": rule.words}
    return out


CONVENTION_NAMES = {"macs": "multiply-adds, scan at 9*L*D*N (ours, fvcore's, DiT's)",
                    "macs_no_scan": "multiply-adds without the scan",
                    "flops": "FLOPs at 2 per multiply-add", "flops_no_scan": "FLOPs at 2 per multiply-add, no scan",
                    "calflops": "calflops 0.3.2 on our code",
                    "published_rebuilt": "calflops on the released code, rebuilt by the rule"}


def published() -> dict:
    """{(model name, text): published GFLOPs} from analysis/metrics/paper_claims.json."""
    claims = {c["id"]: c for c in load_claims()["claims"]}
    return {(name, text): claims["gflops-text" if text else "gflops-uncond"]["models"][short]
            for short, name in PAPER_MODELS.items() for text in (False, True)}


def report(models=("USM-B/1", "ZigMa-B/1")) -> str:
    """Markdown: every convention for each model, unconditional and text, with the USM / ZigMa
    ratio when both are there; then each rule, its modules and the rebuilt value beside the paper's."""
    paper = published()
    modes = [(m, text) for text in (False, True) for m in models]
    header = ["convention"] + [f"{m}{', text' if text else ''}" for m, text in modes]
    ratio = list(models) == ["USM-B/1", "ZigMa-B/1"]
    header += ["USM / ZigMa", "USM / ZigMa, text"] if ratio else []
    rows = []
    for key, words in {**CONVENTION_NAMES, "published": "published (the paper)"}.items():
        values = {mode: paper.get(mode) if key == "published" else conventions(*mode).get(key) for mode in modes}
        row = [words] + ["-" if v is None else f"{v:.2f}" for v in values.values()]
        if ratio:
            row += [_ratio(values[("USM-B/1", text)], values[("ZigMa-B/1", text)]) for text in (False, True)]
        rows.append(row)
    lines = [markdown_table(header, rows)]
    lines.append("\nGFLOPs of one forward pass, batch 1, a 32x32x4 latent (256 px); text: 77 tokens of 768.")
    for mode in modes:
        counted = conventions(*mode)
        if "rule" not in counted:
            continue
        rule = counted["rule"]
        parts = [f"+{v:.4f} {m} (unseen here)" for m, v in rule["added"].items()]
        parts += [f"-{v:.4f} {m}" for m, v in rule["dropped"].items()]
        rebuilt, target = counted["published_rebuilt"], paper.get(mode)
        against = "" if target is None else f" vs published {target:.2f} ({rebuilt / target - 1:+.3%})"
        lines.append(f"\n{header[modes.index(mode) + 1]}: calflops {counted['calflops']:.4f} "
                     + " ".join(parts) + f" = {rebuilt:.4f}{against}")
    for name in models:
        counted = conventions(name)
        lines.append(f"\n{name}, calflops by module (GFLOPs): "
                     + ", ".join(f"{m} {v:.3f}" for m, v in counted["by_module"].items() if v >= 0.0005)
                     + "; not seen: " + (", ".join(f"{m} {v:.3f}" for m, v in counted["unseen"].items()) or "none"))
    for name in dict.fromkeys(family(m) for m in models):
        if name in RULES:
            lines.append(f"\nrule for {name}: {RULES[name].words}.")
    return "\n".join([*lines, "", stamp_line(stamp("flops"))])


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"
