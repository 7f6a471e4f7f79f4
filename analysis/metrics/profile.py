"""The efficiency table of the paper: params, GFLOPs, activation memory, train/sample throughput.

    python -m analysis profile --models USM-B/1 ZigMa-B/1 DiT-B/2 --image-size 256 512 1024

For each model and image size (pixels; the models see the SD-VAE latent, size / 8) it writes
``results/profile/<model>_<size>.json`` and prints a table with USM/ZigMa ratios, then a scaling
plot of GFLOPs and activation memory against resolution (``scaling.png`` / ``.pdf``).
- GFLOPs: ``analysis.metrics.flops`` (forward, batch 1, scan by formula).
- Activation memory: bytes saved for backward by one training step at ``--batch``
  (``analysis.metrics.memory``), with and without gradient checkpointing, measured with real tensors on
  the device for the sizes whose throughput is timed, and on the meta device (instant) for larger
  ones. Meta is exact for the Mamba models; for attention it follows SDPA's math kernel, which
  saves the attention matrix, so DiT's meta numbers are upper bounds (``activation_method``).
  On CUDA also the peak allocated bytes.
- Throughput: training steps/s and sampling images/s at ``--batch`` after warm-up, for sizes up
  to ``--throughput-max-size`` (default: 256 on CPU, all on GPU).
"""

from __future__ import annotations

import inspect
import json
import platform
from pathlib import Path

import torch

from analysis.metrics.flops import count_registered, example_cond
from analysis.metrics.memory import activation_bytes, training_step_memory
from analysis.metrics.throughput import sample_images_per_second, train_steps_per_second
from usm.devices import device_name
from usm.files import atomic_save, atomic_write
from usm.markdown import table as markdown_table
from usm.models.registry import MODELS, build_model
from usm.precision import use_tf32
from usm.provenance import UNRECORDED, stamp, stamp_line
from usm.rectified_flow import training_loss
from usm.ssm import resolve_backend


def model_activation_bytes(name: str, side: int, batch: int, checkpoint: bool, device="meta", **model_args) -> int:
    """Activation bytes of one training step, built on ``device`` ("meta": shapes only, instant),
    with constructor ``model_args`` (a run's recorded model config). Scans run on the pure-PyTorch
    backend, whose saved tensors are the same on every device (the compiled CPU kernels save less:
    their inputs and every 16th state)."""
    model_args = {k: v for k, v in model_args.items() if k not in ("input_size", "use_checkpoint", "scan_backend")}
    accepted = inspect.signature(MODELS[name].cls).parameters  # a family without a scan or checkpointing
    fixed = {k: v for k, v in (("scan_backend", "torch"), ("use_checkpoint", checkpoint)) if k in accepted}
    with torch.device(device):
        model = build_model(name, input_size=side, **fixed, **model_args)
        x = torch.randn(batch, model.config["in_channels"], side, side)
        return activation_bytes(lambda: training_loss(model, x, example_cond(model, batch)), model)


def profile_one(name: str, image_size: int, batch: int, device: torch.device, throughput: bool) -> dict:
    side = image_size // 8
    flops = count_registered(name, image_size)
    memory_device = device if throughput else torch.device("meta")
    record = {
        "model": name, "image_size": image_size, "latent_side": side, "batch": batch, "params": flops.params,
        "gflops": flops.gflops, "gflops_scan": flops.gflops_scan, "gflops_by_operator": flops.by_operator,
        "activation_bytes": model_activation_bytes(name, side, batch, False, memory_device),
        "activation_bytes_checkpointed": model_activation_bytes(name, side, batch, True, memory_device),
        "activation_method": "measured" if throughput else "meta (exact for Mamba; attention: upper bound)",
        "activation_scan_backend": "torch",  # both activation columns: the same backend on every device
        "device": str(device), "device_name": device_name(device),
        "dtype": "float32 (TF32 matmuls)" if use_tf32(device) else "float32",  # as the trainer runs fp32 on CUDA
        "scan_backend": resolve_backend("auto", device), "torch": torch.__version__, "host": platform.node(),
    }
    if throughput:
        torch.manual_seed(0)
        model = build_model(name, input_size=side).to(device)
        x = torch.randn(batch, model.config["in_channels"], side, side, device=device)
        record["train_steps_per_s"] = train_steps_per_second(model, x, steps=2, warmup=1)
        model.eval()
        record["sample_images_per_s"] = sample_images_per_second(model, x, sampling_steps=25, repeats=2)
        if device.type == "cuda":  # with the fastest scan ("scan_backend"): kept apart from the torch-backend columns
            memory = training_step_memory(model, x, torch.rand(batch, device=device))
            record.update(activation_bytes_fast_scan=memory["activation_bytes"],
                          cuda_peak_bytes=memory["cuda_peak_bytes"])
    return record


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def render(records: list[dict]) -> str:
    """Markdown: one row per model and size, then USM/ZigMa ratios per size."""
    header = ["model", "image", "params (M)", "GFLOPs", "scan GFLOPs", "act. mem (MiB)", "act. mem ckpt (MiB)",
              "train steps/s", "sample img/s"]

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    rows = [[r["model"], r["image_size"], f"{r['params'] / 1e6:.1f}", f"{r['gflops']:.2f}", f"{r['gflops_scan']:.2f}",
             f"{r['activation_bytes'] / 2**20:.0f}", f"{r['activation_bytes_checkpointed'] / 2**20:.0f}",
             fmt(r.get("train_steps_per_s"), ".3f"), fmt(r.get("sample_images_per_s"), ".3f")] for r in records]
    lines = [markdown_table(header, rows)]
    by_key = {(r["model"].split("-")[0], r["image_size"]): r for r in records}
    ratios = []
    for size in sorted({r["image_size"] for r in records}):
        usm, zigma = by_key.get(("USM", size)), by_key.get(("ZigMa", size))
        if usm and zigma:
            parts = [f"{label} {value:.2f}" for label, value in (
                ("GFLOPs", ratio(usm["gflops"], zigma["gflops"])),
                ("activation memory", ratio(usm["activation_bytes"], zigma["activation_bytes"])),
                ("train time/step", ratio(zigma.get("train_steps_per_s"), usm.get("train_steps_per_s"))),
                ("sample time/image", ratio(zigma.get("sample_images_per_s"), usm.get("sample_images_per_s"))),
            ) if value is not None]
            ratios.append(f"- USM / ZigMa at {size}px: " + ", ".join(parts))
    stamps = [r.get("code", f"profile@{UNRECORDED}") for r in records]
    return "\n".join(lines + ([""] + ratios if ratios else []) + ["", stamp_line(stamps)])


def scaling_plot(records: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in sorted({r["model"] for r in records}):
        rs = sorted((r for r in records if r["model"] == name), key=lambda r: r["image_size"])
        sizes = [r["image_size"] for r in rs]
        axes[0].plot(sizes, [r["gflops"] for r in rs], marker="o", label=name)
        axes[1].plot(sizes, [r["activation_bytes"] / 2**30 for r in rs], marker="o", label=name)
    batches = sorted({r["batch"] for r in records})
    for ax, label in zip(axes, ["forward GFLOPs (batch 1)", f"activation memory (GiB, batch {batches[0]})"
                                if len(batches) == 1 else "activation memory (GiB)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("image size (px)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    paths = [out / "scaling.png", out / "scaling.pdf"]
    for path in paths:
        atomic_save(path, fig.savefig, format=path.suffix[1:], dpi=150)
    plt.close(fig)
    return paths


def run_profile(models, sizes, batch=1, device="cpu", out="results/profile", throughput_max_size=None,
                log=print) -> list[dict]:
    device = torch.device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    limit = throughput_max_size if throughput_max_size is not None else (10 ** 9 if device.type == "cuda" else 256)
    records = []
    for name in models:
        for size in sizes:
            log(f"profiling {name} at {size}px ...")
            record = profile_one(name, size, batch, device, throughput=size <= limit) | {"code": stamp("profile")}
            path = out / f"{name.replace('/', '_')}_{size}.json"
            atomic_write(path, json.dumps(record, indent=2))
    records = load_records(out)  # every record in the folder: a partial re-profile updates the table
    atomic_write(out / "table.md", render(records) + "\n")
    scaling_plot(records, out)
    return records


def load_records(folder: str | Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in Path(folder).glob("*.json")]
    return sorted(records, key=lambda r: (r["model"], r["image_size"]))
