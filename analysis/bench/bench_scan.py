"""Benchmark of the selective-scan backends: forward + backward time, and the target ratios.

    python -m analysis bench-scan                     # (B, D, L, N) = (2, 1536, 1024, 16), fp32, 2 threads
    python -m analysis bench-scan --shape 2 768 256 16 --repeats 5 --json
    python -m analysis bench-scan --device cuda --shape 8 1536 1024 16 --dtype bfloat16 --forward-only

Compares, on identical inputs (D, z, delta_bias and softplus included):
- ``reference``: usm's per-step loop with autograd (the slow, obviously-correct twin);
- ``torch``: usm's vectorised scan with a hand-written backward (the pure-PyTorch fallback);
- ``numba``: usm's compiled CPU kernels, forward and backward (the CPU default);
- ``triton``: usm's Triton kernels, with ``--device cuda``;
- ``mambapy``: mambapy's parallel scan (``mambapy.pscan``), if installed;
- ``mamba_ssm``: the fused CUDA kernel, with ``--device cuda`` when installed.
The targets are the ``TARGETS`` table below, the one place they are written (``--targets`` prints
it; docs/scan.md gives the reasons). numba's and triton's first calls compile; the warm-up absorbs it.
Times are wall-clock medians after one warm-up, synchronised on CUDA; the backends take turns
round by round, so load on a shared machine falls on all of them alike. ``--dtype bfloat16`` makes
u, delta, B, C and z bf16 (A, D and delta_bias stay fp32, as in the models).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from usm.devices import device_name
from usm.provenance import UNRECORDED, stamp, stamp_line
from usm.ssm import BACKENDS, mamba_ssm_status


def make_inputs(batch, channels, length, state, device, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0, kind=dtype):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=kind).requires_grad_()

    return dict(u=randn(batch, channels, length), delta=randn(batch, channels, length, scale=0.5),
                A=(-torch.rand(channels, state, generator=gen) - 0.1).to(device).requires_grad_(),
                B=randn(batch, state, length), C=randn(batch, state, length), D=randn(channels, kind=torch.float32),
                z=randn(batch, channels, length), delta_bias=randn(channels, scale=0.1, kind=torch.float32))


def mambapy_scan(u, delta, A, B, C, D, z, delta_bias):
    """The same computation through mambapy's parallel scan (its selective_scan, with our extras)."""
    from mambapy.pscan import pscan

    delta = F.softplus(delta + delta_bias[:, None]).transpose(1, 2)  # (b, l, d)
    x = u.transpose(1, 2)
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (b, l, d, n)
    drive = delta.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2) * x.unsqueeze(-1)
    hs = pscan(decay, drive)
    y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(3) + D * x
    return (y * F.silu(z.transpose(1, 2))).transpose(1, 2)


def _backend(name):
    return lambda **kw: BACKENDS[name](**kw, delta_softplus=True)


def numba_tokens():
    """numba's token-major entry (what USM's and ZigMa's mixers call): the same inputs, laid out
    (batch, L, D) before the clock starts, as a model's linear layers leave them."""
    from usm.ssm.numba_cpu import scan_tokens_numba

    laid_out = {}

    def run(u, delta, A, B, C, D, z, delta_bias):
        if laid_out.get("of") is not u:
            leaf = lambda x: x.detach().transpose(1, 2).contiguous().requires_grad_()  # noqa: E731
            laid_out.update(of=u, tensors={k: leaf(v) for k, v in dict(u=u, delta=delta, B=B, C=C, z=z).items()})
        t = laid_out["tensors"]
        for v in t.values():
            v.grad = None
        return scan_tokens_numba(t["u"], t["delta"], A, t["B"], t["C"], D, t["z"], delta_bias, True, None)

    return run


def candidates(device) -> dict:
    runs = {name: _backend(name) for name in ("reference", "torch")}
    if device.type == "cpu":
        from usm.ssm.numba_cpu import available

        if available()[0]:
            runs["numba"] = _backend("numba")
            runs["numba-tokens"] = numba_tokens()
    if device.type == "cuda":
        from usm.ssm.triton_gpu import available

        if available()[0]:
            runs["triton"] = _backend("triton")
    try:
        import mambapy.pscan  # noqa: F401

        runs["mambapy"] = lambda **kw: mambapy_scan(**kw)
    except ImportError:
        pass
    if device.type == "cuda" and mamba_ssm_status()[0]:
        runs["mamba_ssm"] = _backend("mamba_ssm")
    return runs


def timer(fn, inputs, device, backward: bool = True):
    """A function that runs fn(**inputs) (and its backward) once and returns the seconds it took."""
    def once():
        for v in inputs.values():
            v.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if backward:
            fn(**inputs).float().sum().backward()
        else:
            with torch.no_grad():
                fn(**inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return once


def take_turns(timed: dict, repeats: int, warmups: int = 1) -> dict:
    """Median seconds of each candidate (a function that runs once and returns the seconds it
    took) after its warm-ups. The repeats take turns, one call of each candidate per round, so a
    burst of load on a shared machine falls on all of them alike instead of on whichever ran at
    the time."""
    for once in timed.values():
        for _ in range(warmups):  # compiles, loads caches
            once()
    samples = {name: [] for name in timed}
    for _ in range(repeats):
        for name, once in timed.items():
            samples[name].append(once())
    return {name: statistics.median(values) for name, values in samples.items()}


def time_interleaved(runs: dict, inputs, repeats, device, backward: bool = True) -> dict:
    """Median seconds of fn(**inputs) (and its backward) for each candidate, in turns."""
    return take_turns({name: timer(fn, inputs, device, backward) for name, fn in runs.items()}, repeats)


PEAK_SCRIPT = """
import gc, re, sys, torch
from analysis.bench.bench_scan import candidates, make_inputs
name, shape, threads = sys.argv[1], [int(v) for v in sys.argv[2:6]], int(sys.argv[6])
torch.set_num_threads(threads)
fn = candidates(torch.device("cpu"))[name]
fn(**make_inputs(1, 4, 8, shape[3], device="cpu")).sum().backward()  # loads compiled kernels
inputs = make_inputs(*shape, device="cpu")
gc.collect()
def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
fn(**inputs).sum().backward()
print(status("VmHWM") - before)
"""


def peak_extra_bytes(name: str, shape, threads: int) -> int:
    """Peak resident memory one CPU forward+backward adds on top of its inputs, in a fresh process:
    Linux's peak-RSS counter is reset just before the call (``/proc/self/clear_refs``) and read
    after it. It includes the output and the input gradients, which every backend allocates alike."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, name, *map(str, shape), str(threads)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Target:
    """A speed target: time(slower) / time(faster) compared with ``bound``, at ``shape`` (B, D, L, N)
    only, or at any shape no other target of the pair names (None), in ``mode`` only (or both)."""
    slower: str
    faster: str
    op: str  # ">=", ">" or "<="
    bound: float
    shape: tuple | None = None
    mode: str | None = None

    @property
    def name(self) -> str:
        return f"{self.slower}/{self.faster} {self.op} {self.bound:g}"

    def met(self, seconds: dict) -> bool:
        ratio = seconds[self.slower] / seconds[self.faster]
        return {">=": ratio >= self.bound, ">": ratio > self.bound, "<=": ratio <= self.bound}[self.op]


TARGETS = (  # docs/scan.md gives the reasons; stated in a record only for what it measured
    Target("reference", "torch", ">=", 4),
    # a short, narrow scan leaves the torch backend few positions per chunk to batch
    Target("reference", "torch", ">=", 3, shape=(8, 128, 256, 16)),
    Target("mambapy", "torch", ">", 1),
    # the models' path: token-major tensors read in place (USM's and ZigMa's mixers)
    Target("torch", "numba-tokens", ">=", 4),
    Target("torch", "numba-tokens", ">=", 5, shape=(8, 128, 256, 16)),  # the smoke model's largest scan
    # mamba_ssm's (B, D, L) entry, which no model calls on the CPU: it transposes five inputs into the
    # token-major kernels and the output (and every gradient) back, copies the models' path never makes
    Target("torch", "numba", ">=", 3),
    Target("torch", "triton", ">=", 20),
    Target("triton", "mamba_ssm", "<=", 2.5, mode="fwd+bwd"),
    Target("triton", "mamba_ssm", "<=", 1.5, mode="fwd"),
)


def targets_table() -> str:
    """TARGETS as Markdown (docs/scan.md's block): which ratio, where it applies."""
    from usm.markdown import table

    def where(t: Target) -> str:
        named = any(o.shape is not None and (o.slower, o.faster) == (t.slower, t.faster) for o in TARGETS)
        shape = ("any other shape" if named else "any shape") if t.shape is None else f"(B, D, L, N) = {t.shape}"
        return shape + ("" if t.mode is None else f", {t.mode} only")

    return table(["target", "time of", "over time of", "applies at"],
                 [[f"`{t.name}`", t.slower, t.faster, where(t)] for t in TARGETS]) + "\n\n" + stamp_line(stamp("scan"))


def targets_for(seconds: dict, shape: tuple, mode: str) -> dict[str, bool]:
    """{target name: met} of the targets that apply to a measurement: per pair of measured backends,
    the one naming this shape, else the shape-free one, in this mode."""
    chosen = {}
    for target in TARGETS:
        if target.slower in seconds and target.faster in seconds and target.mode in (None, mode) \
                and target.shape in (None, shape):
            pair = (target.slower, target.faster)
            if pair not in chosen or target.shape is not None:
                chosen[pair] = target
    return {t.name: t.met(seconds) for t in chosen.values()}


def memory_report(result: dict, shape: list[int], threads: int, backends, show: bool) -> None:
    """Each CPU backend's peak extra memory of one fwd+bwd (fresh processes), and its target."""
    result["peak_extra_bytes"] = peaks = {name: peak_extra_bytes(name, shape, threads) for name in backends
                                          if name in ("torch", "numba")}
    if show:
        for name, value in peaks.items():
            print(f"{name:>10}: peak extra memory of one fwd+bwd {value / 2**20:8.1f} MiB")
    if {"torch", "numba"} <= set(peaks):
        result["targets"]["numba peak memory <= torch's"] = peaks["numba"] <= peaks["torch"]


def print_summary(result: dict) -> None:
    for key, value in result["speedup_of_torch_over"].items():  # value: the other backend's time over torch's
        name = key.split("/")[0]
        print(f"{name} is {1 / value:.2f}x faster than torch" if value < 1 else
              f"{name} is {value:.2f}x slower than torch")
    for target, met in result["targets"].items():
        print(f"target {target}: {'met' if met else 'NOT met'}")


LABELS = {"reference": "reference (per-step autograd loop)", "mambapy": "mambapy `pscan`", "torch": "torch",
          "numba": "numba, (B, D, L) entry", "numba-tokens": "numba, token-major (B, L, D) entry",
          "triton": "triton", "mamba_ssm": "mamba_ssm"}


def records_table(records: list[dict]) -> str:
    """Markdown: each backend's seconds in each record (a column per record), the peak extra memory
    where a record measured it, and numba's speed-up over torch (docs/scan.md shows this table)."""
    from usm.markdown import table

    def column(record: dict) -> str:
        threads = record["threads"]
        return f"{tuple(record['shape'].values())}, {threads} thread{'s' if threads > 1 else ''}"

    memory = [r for r in records if r.get("peak_extra_bytes")]
    headers = ["backend", *map(column, records), *(f"peak extra MiB, {tuple(r['shape'].values())}" for r in memory)]
    names = [n for n in LABELS if any(n in r["seconds"] for r in records)]
    rows = [[LABELS[n], *(f"{r['seconds'][n]:.3g} s" if n in r["seconds"] else "-" for r in records),
             *(f"{r['peak_extra_bytes'][n] / 2 ** 20:.3g}" if n in r["peak_extra_bytes"] else "-" for r in memory)]
            for n in names]
    for name, words in (("numba", "numba's (B, D, L) entry"), ("numba-tokens", "numba's token-major entry")):
        if not any(name in r["seconds"] for r in records):
            continue
        rows.append([f"speed-up of {words} over torch",
                     *(f"{r['seconds']['torch'] / r['seconds'][name]:.1f}x" if {"torch", name} <= r["seconds"].keys()
                       else "-" for r in records),
                     *(f"{r['peak_extra_bytes']['torch'] / r['peak_extra_bytes'][name]:.1f}x less"
                       if name in r["peak_extra_bytes"] else "-" for r in memory)])
    return table(headers, rows) + "\n\n" + stamp_line([r.get("code", f"scan@{UNRECORDED}") for r in records])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m analysis bench-scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[2, 1536, 1024, 16], metavar=("B", "D", "L", "N"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, this machine's cores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--forward-only", action="store_true", help="time the forward alone (no_grad)")
    parser.add_argument("--only", nargs="*", help="subset of backends to run")
    parser.add_argument("--memory", action="store_true",
                        help="CPU: also measure each backend's peak extra memory of one fwd+bwd (fresh processes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--table", nargs="+", metavar="RECORD",
                        help="run nothing: print the Markdown table of these --json records (docs/scan.md's)")
    parser.add_argument("--targets", action="store_true", help="run nothing: print the targets as a Markdown table")
    args = parser.parse_args(argv)
    if args.targets:
        print(targets_table())
        return {}
    if args.table:
        from pathlib import Path

        print(records_table([json.loads(Path(path).read_text()) for path in args.table]))
        return {}

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    inputs = make_inputs(*args.shape, device=device, dtype=getattr(torch, args.dtype))
    runs = {k: v for k, v in candidates(device).items() if not args.only or k in args.only}
    mode = "fwd" if args.forward_only else "fwd+bwd"
    seconds = time_interleaved(runs, inputs, args.repeats, device, backward=not args.forward_only)
    if not args.json:
        for name, value in seconds.items():
            print(f"{name:>10}: {value:8.4f} s  ({mode}, median of {args.repeats}, rounds interleaved)", flush=True)
    ratios = {f"{other}/torch": seconds[other] / seconds["torch"] for other in seconds if other != "torch"
              and "torch" in seconds}
    result = dict(shape=dict(zip("BDLN", args.shape)), device=str(device), device_name=device_name(device),
                  threads=args.threads, torch=torch.__version__, dtype=args.dtype, mode=mode, seconds=seconds,
                  speedup_of_torch_over=ratios, targets=targets_for(seconds, tuple(args.shape), mode),
                  code=stamp("scan"))
    for slower, faster, key in (("torch", "numba", "speedup_of_numba_over_torch"),
                                ("torch", "triton", "speedup_of_triton_over_torch"),
                                ("triton", "mamba_ssm", "triton_over_mamba_ssm_time")):
        if slower in seconds and faster in seconds:
            result[key] = seconds[slower] / seconds[faster]
    if args.memory and device.type == "cpu":
        memory_report(result, args.shape, args.threads, seconds, show=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)
    return result


if __name__ == "__main__":
    main()
