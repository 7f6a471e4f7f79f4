"""A run directory: its files, its resolved config, and the model it describes.

    >>> import tempfile
    >>> from usm.runs import RunDir
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.append_stats({"step": 1, "loss": 0.5}); run.read_stats()
    [{'step': 1, 'loss': 0.5}]

Layout (DESIGN.md section 2): ``config.json`` (the resolved config), ``log.txt``,
``stats.jsonl`` (one JSON object per line, appended), ``checkpoints/``, ``metrics/``, ``samples/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from usm.registry import build_model


class ConfigMismatch(ValueError):
    """A run directory already holds a different run."""


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.log_path = self.path / "log.txt"
        self.stats_path = self.path / "stats.jsonl"
        self.checkpoints = self.path / "checkpoints"

    def read_config(self) -> dict | None:
        return json.loads(self.config_path.read_text()) if self.config_path.exists() else None

    def claim(self, resolved: dict) -> None:
        """Write ``resolved`` as this directory's config, or check it equals the one already there
        (apart from runtime fields, which the caller leaves out of ``resolved['identity']``)."""
        existing = self.read_config()
        if existing is not None and existing["identity"] != resolved["identity"]:
            diffs = [f"{section}.{key}: {existing['identity'][section].get(key)!r} here, "
                     f"{resolved['identity'][section].get(key)!r} requested"
                     for section in resolved["identity"] for key in resolved["identity"][section]
                     if existing["identity"].get(section, {}).get(key) != resolved["identity"][section][key]]
            raise ConfigMismatch(f"{self.path} already holds a different run:\n  " + "\n  ".join(diffs)
                                 + "\nUse another --run-dir, or rerun with the original settings to resume.")
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(resolved, indent=2))
        os.replace(tmp, self.config_path)

    def append_stats(self, record: dict) -> None:
        with open(self.stats_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_stats(self) -> list[dict]:
        if not self.stats_path.exists():
            return []
        return [json.loads(line) for line in self.stats_path.read_text().splitlines() if line.strip()]

    def drop_stats_after(self, step: int) -> int:
        """On resume, forget lines logged after the checkpoint (those steps are trained again).
        Returns how many lines were dropped."""
        records = self.read_stats()
        keep = [r for r in records if r.get("step", 0) <= step]
        if len(keep) != len(records):
            tmp = self.stats_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
            os.replace(tmp, self.stats_path)
        return len(records) - len(keep)


def model_from_config(resolved: dict):
    """The model a resolved run config describes (architecture only, fresh weights)."""
    model_cfg, derived = resolved["identity"]["model"], resolved["derived"]
    kwargs = dict(input_size=derived["input_size"], in_channels=derived["in_channels"],
                  num_classes=derived["num_classes"], class_dropout_prob=model_cfg["class_dropout_prob"])
    if derived["d_context"]:
        kwargs.update(has_text=True, d_context=derived["d_context"])
    return build_model(model_cfg["model"], **{**kwargs, **model_cfg["model_args"]})
