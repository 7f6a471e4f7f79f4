"""Load checkpoints saved by the reference U-Shape Mamba implementation into ``usm.models.USM``.

    >>> from usm.models.convert import load_reference_state_dict, to_reference_state_dict
    >>> from usm.models.registry import build_model
    >>> model = build_model("USM-T/2")
    >>> report = load_reference_state_dict(model, to_reference_state_dict(model))
    >>> len(report.dropped), report.dropped[-1]  # ln_1 weight and bias of 7 blocks, y_embedder
    (16, 'y_embedder.weight')

Command line (the config is read off the checkpoint's shapes; ``--set key=value`` overrides)::

    python -m usm.models.convert reference.pt usm.pt [--key ema] [--set learn_pos_emb=false]

Mapping: the reference keeps encoder blocks and downsamplers in one flat list ``enc_blocks``
(k blocks then a conv, per stage) and decoder upsamplers and blocks in ``dec_blocks`` (an
upsampler then k blocks); its scan parameters carry a leading direction axis of size 1
(``x_proj_weight`` (1, R+2N, E)). Loading is strict: anything missing, unexpected or of the wrong
shape raises an error naming the keys. The only keys dropped are the reference's unused pieces
(docs/models.md): every block's ``attn.ln_1`` and, for models without text, ``y_embedder``
(a Linear(768 -> D) built but never called); the report lists them.
"""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import dataclass, field

import torch

from usm.cli import parse_assignments
from usm.files import atomic_save
from usm.layers.embeddings import sincos_2d
from usm.models.usm import USM

# Our key prefix inside a block -> the reference's; first match wins. "lead" marks parameters the
# reference stores with a leading direction axis of size 1.
BLOCK_KEYS = [
    ("skip_scale", "attn.skip_scale", False),
    ("mixer.ssm.x_proj.weight", "attn.self_attention.x_proj_weight", True),
    ("mixer.ssm.dt_proj.weight", "attn.self_attention.dt_projs_weight", True),
    ("mixer.ssm.dt_proj.bias", "attn.self_attention.dt_projs_bias", True),
    ("mixer.ssm.A_log", "attn.self_attention.A_logs", False),
    ("mixer.ssm.D", "attn.self_attention.Ds", False),
    ("mixer.", "attn.self_attention.", False),
    ("skip_proj.", "skip.", False),
    ("", "", False),  # adaLN_modulation, and text layers under their own names
]
TOP_KEYS = [
    ("patch_embed.proj.", "x_embedder.proj.", False),
    ("conditioner.t_embedder.", "t_embedder.", False),
    ("conditioner.class_embedder.", "y_embedder.", False),
    ("conditioner.context_embedder.", "y_embedder.", False),
    ("middle.", "middle_block.", None),  # None: a block, mapped by BLOCK_KEYS
    ("", "", False),
]
UNUSED_EVERYWHERE = re.compile(r"^(enc_blocks\.\d+\.|dec_blocks\.\d+\.|middle_block\.)attn\.ln_1\.(weight|bias)$")
UNUSED_WITHOUT_TEXT = re.compile(r"^y_embedder\.(weight|bias)$")


class ReferenceCheckpointError(ValueError):
    """The checkpoint does not fit the model: the message lists every offending key."""


@dataclass
class ConversionReport:
    loaded: int
    dropped: list[str] = field(default_factory=list)


def _rename(key: str, table) -> tuple[str, bool | None]:
    for ours, ref, lead in table:
        if key.startswith(ours):
            return ref + key[len(ours):], lead
    raise AssertionError("the last rule matches every key")


def reference_key(key: str, blocks_per_stage: int) -> tuple[str, bool]:
    """(reference key, has a leading axis of 1) for one of our state-dict keys."""
    k = blocks_per_stage
    patterns = [
        (r"encoder\.(\d+)\.blocks\.(\d+)\.(.*)", lambda s, i, rest: (f"enc_blocks.{s * (k + 1) + i}.", rest)),
        (r"encoder\.(\d+)\.down\.(.*)", lambda s, rest: (f"enc_blocks.{s * (k + 1) + k}.", None, rest)),
        (r"decoder\.(\d+)\.up\.(.*)", lambda s, rest: (f"dec_blocks.{s * (k + 1)}.", None, rest)),
        (r"decoder\.(\d+)\.blocks\.(\d+)\.(.*)", lambda s, i, rest: (f"dec_blocks.{s * (k + 1) + 1 + i}.", rest)),
    ]
    for pattern, where in patterns:
        m = re.fullmatch(pattern, key)
        if m:
            groups = [int(g) if g.isdigit() else g for g in m.groups()]
            prefix, *rest = where(*groups)
            if len(rest) == 2:  # a plain layer (conv): its own weight/bias names
                return prefix + rest[1], False
            name, lead = _rename(rest[0], BLOCK_KEYS)
            return prefix + name, lead
    name, lead = _rename(key, TOP_KEYS)
    if lead is None:  # the middle block
        inner, lead = _rename(key[len("middle."):], BLOCK_KEYS)
        return "middle_block." + inner, lead
    return name, lead


def _is_unused(ref_key: str, model: USM) -> bool:
    return bool(UNUSED_EVERYWHERE.match(ref_key)) or (
        not model.config["has_text"] and bool(UNUSED_WITHOUT_TEXT.match(ref_key)))


def load_reference_state_dict(model: USM, state_dict: dict[str, torch.Tensor]) -> ConversionReport:
    """Copy a reference state dict into ``model`` (strictly); return what was dropped."""
    ours = model.state_dict()
    mapping = {key: reference_key(key, model.blocks_per_stage) for key in ours}
    by_ref = {ref: (key, lead) for key, (ref, lead) in mapping.items()}
    dropped = sorted(k for k in state_dict if k not in by_ref and _is_unused(k, model))
    unexpected = sorted(k for k in state_dict if k not in by_ref and k not in dropped)
    missing = sorted(ref for ref in by_ref if ref not in state_dict)
    converted, bad_shapes = {}, []
    for ref, (key, lead) in by_ref.items():
        if ref not in state_dict:
            continue
        value = state_dict[ref]
        want = (1,) + tuple(ours[key].shape) if lead else tuple(ours[key].shape)
        if tuple(value.shape) != want:
            bad_shapes.append(f"{ref}: checkpoint {tuple(value.shape)}, model expects {want}")
            continue
        converted[key] = value[0] if lead else value
    problems = [f"{title} ({len(keys)}): {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}"
                for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shapes))
                if keys]
    if problems:
        raise ReferenceCheckpointError(
            "the reference checkpoint does not fit this USM configuration "
            f"({model.config}):\n  " + "\n  ".join(problems)
            + "\nBuild the model with the checkpoint's hyper-parameters (python -m usm.models.convert infers them).")
    model.load_state_dict(converted, strict=True)
    return ConversionReport(loaded=len(converted), dropped=dropped)


def to_reference_state_dict(model: USM, include_unused: bool = True) -> dict[str, torch.Tensor]:
    """Our weights under the reference's names and shapes (with its unused layers at their init)."""
    out = {}
    for key, value in model.state_dict().items():
        ref, lead = reference_key(key, model.blocks_per_stage)
        out[ref] = value[None] if lead else value
    if include_unused:
        hidden = model.config["hidden_size"]
        like = dict(dtype=model.pos_embed.dtype, device=model.pos_embed.device)
        for block in [k[: -len("attn.skip_scale")] for k in out if k.endswith("attn.skip_scale")]:
            out[block + "attn.ln_1.weight"] = torch.ones(hidden, **like)
            out[block + "attn.ln_1.bias"] = torch.zeros(hidden, **like)
        if not model.config["has_text"]:
            out["y_embedder.weight"] = torch.zeros(hidden, 768, **like)
            out["y_embedder.bias"] = torch.zeros(hidden, **like)
    return out


# --------------------------------------------------------------------------------------------------
# Reading a configuration off a reference state dict, for the command line.

def infer_config(state_dict: dict[str, torch.Tensor]) -> dict:
    """USM constructor arguments implied by the shapes of a reference state dict."""
    try:
        patch = state_dict["x_embedder.proj.weight"]
        pos = state_dict["pos_embed"]
        hidden, in_channels, patch_size = patch.shape[0], patch.shape[1], patch.shape[2]
        grid = int(round(pos.shape[1] ** 0.5))
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"enc_blocks\.(\d+)\.attn\.", k))}
        k = len(blocks) // 3
        out_features = state_dict["final_layer.linear.weight"].shape[0]
        inner = state_dict["middle_block.attn.self_attention.out_proj.weight"].shape[1]
        first_dec_block = "dec_blocks.1.attn.self_attention.in_proj.weight"
    except KeyError as exc:
        raise ReferenceCheckpointError(f"not a reference USM state dict: no key {exc}") from None
    # A label table cannot tell a null-class row from a real class: assume the CFG layout
    # (num_classes + 1 rows, dropout on), the reference's class-conditional setting; --set overrides.
    labels = state_dict.get("y_embedder.embedding_table.weight")
    fixed_pos = torch.allclose(pos[0].float(), sincos_2d(hidden, grid, grid), atol=1e-5)
    return dict(
        input_size=grid * patch_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden,
        depth=6 * k + 1, learn_sigma=out_features == 2 * in_channels * patch_size ** 2,
        num_classes=0 if labels is None else labels.shape[0] - 1, class_dropout_prob=0.1 if labels is not None else 0.0,
        learn_pos_emb=not fixed_pos, skip_conn="dec_blocks.1.skip.weight" in state_dict,
        use_convtranspose=("dec_blocks.0.weight" in state_dict
                           and tuple(state_dict["dec_blocks.0.weight"].shape[2:]) == (2, 2)),
        z_gate=state_dict[first_dec_block].shape[0] != inner,
        expand=inner // hidden, d_state=state_dict["middle_block.attn.self_attention.A_logs"].shape[1],
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m usm.models.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="checkpoint saved by the reference implementation (.pt)")
    parser.add_argument("dst", help="where to write the usm-bench checkpoint")
    parser.add_argument("--key", default=None,
                        help="entry of a checkpoint dict holding the weights (e.g. 'ema' or 'model'); "
                             "default: 'ema' if present, else 'model', else the file itself")
    parser.add_argument("--set", action="extend", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override an inferred USM argument, e.g. learn_pos_emb=false")
    args = parser.parse_args(argv)

    blob = torch.load(args.src, map_location="cpu", weights_only=True)
    key = args.key or next((k for k in ("ema", "model") if isinstance(blob, dict) and k in blob), None)
    state_dict = blob[key] if key else blob
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}  # DDP-wrapped saves
    config = infer_config(state_dict)
    for name, value in parse_assignments(args.set, "--set").items():
        if name not in inspect.signature(USM).parameters:
            raise SystemExit(f"--set {name}={value}: {name!r} is not a USM argument")
        config[name] = value
    model = USM(**config)
    report = load_reference_state_dict(model, state_dict)
    converted = {"model": model.state_dict(), "config": model.config, "converted_from": args.src}
    atomic_save(args.dst, lambda f: torch.save(converted, f))
    print(f"loaded {report.loaded} tensors from {args.src}{f' [{key}]' if key else ''} into USM({config})")
    print(f"dropped {len(report.dropped)} unused reference tensors: {', '.join(report.dropped[:4])}"
          f"{' ...' if len(report.dropped) > 4 else ''}")
    print(f"wrote {args.dst}")


if __name__ == "__main__":
    main()
