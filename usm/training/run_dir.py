"""A run directory: its files, its resolved config, its lock, and the model it describes.

    >>> import tempfile
    >>> from usm.training.run_dir import RunDir
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.append_stats({"step": 1, "loss": 0.5}); run.read_stats()
    [{'step': 1, 'loss': 0.5}]
    >>> with run.locked():
    ...     RunDir(run.path).locked().__enter__()
    Traceback (most recent call last):
    ...
    usm.training.run_dir.RunBusy: ... is in use by another trainer ...

Layout (docs/conventions.md): ``config.json`` (the resolved config), ``trainer.lock``,
``log.txt``, ``stats.jsonl`` (one JSON object per line, appended), ``checkpoints/``, ``metrics/``,
``samples/``.

The lock is ``flock(2)`` on ``trainer.lock``, held for the whole training invocation and released
by the kernel when the process dies, however it dies. On Linux, ``flock`` on NFS is carried out with
POSIX byte-range locks through the NFS lock manager, so it holds across the nodes of a cluster
(NFSv3 with lockd, NFSv4); Lustre needs its ``flock`` mount option, and GPFS supports it. Where the
filesystem refuses locks, the trainer warns that it cannot detect a second trainer and goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from pathlib import Path

from usm import deprecated
from usm.files import append_line, atomic_write, check_writable, read_json
from usm.locks import try_lock
from usm.models.registry import build_model, model_spec
from usm.training.config import SECTIONS

log = logging.getLogger("usm.run_dir")


class ConfigMismatch(ValueError):
    """A run directory already holds a different run."""


class RunBusy(RuntimeError):
    """Another trainer holds the run directory's lock."""


class RunDirError(OSError):
    """The run directory cannot be written; the message names the path."""


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.log_path = self.path / "log.txt"
        self.stats_path = self.path / "stats.jsonl"
        self.checkpoints = self.path / "checkpoints"

    @contextlib.contextmanager
    def locked(self):
        """Hold ``trainer.lock`` (RunBusy if another process holds it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        busy = RunBusy(f"{self.path} is in use by another trainer (its trainer.lock is held): wait for it "
                       "to finish, or stop it; two trainers on one run would overwrite each other")
        with try_lock(self.path / "trainer.lock", busy):
            yield self

    def check_writable(self) -> None:
        """Fail now, before any step is trained, if the directory or its checkpoints/ cannot be written."""
        for folder in (self.path, self.checkpoints):
            check_writable(folder, "--run-dir", "the run's files", RunDirError)

    def read_config(self) -> dict | None:
        if not self.config_path.exists():
            return None
        return read_json(self.config_path, "delete it and rerun the same command: it is written again, and "
                                           "checked against the config the checkpoints hold")

    def write_config(self, resolved: dict) -> None:
        """Write ``resolved`` as this directory's config, or check it equals the one already there
        (apart from runtime fields, which the caller leaves out of ``resolved['identity']``)."""
        existing = self.read_config()
        diffs = [] if existing is None else identity_differences(existing["identity"], resolved["identity"])
        if diffs:
            raise ConfigMismatch(f"{self.path} already holds a different run:\n  " + "\n  ".join(diffs)
                                 + "\nUse another --run-dir, or rerun with the original settings to resume.")
        self.check_same_data(existing, resolved)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_path, json.dumps(resolved, indent=2))

    def check_same_data(self, existing: dict | None, resolved: dict) -> None:
        """A run with checkpoints resumes on the data it started on: a folder whose images changed
        (added, removed, rewritten) would silently train its later steps on other data."""
        from usm.training.checkpoint import list_checkpoints

        then = (existing or {}).get("derived", {})
        now = resolved["derived"]
        if "data_fingerprint" not in then or then["data_fingerprint"] == now["data_fingerprint"]:
            return  # a new run, one of an earlier version (no fingerprint), or the same data
        if list_checkpoints(self.checkpoints):
            raise ConfigMismatch(f"the data of {self.path} changed since its first steps ({then['dataset_size']} -> "
                                 f"{now['dataset_size']} images, content {then['data_fingerprint']} -> "
                                 f"{now['data_fingerprint']}): restore it to resume, or train on the new data in "
                                 "another --run-dir")

    def append_stats(self, record: dict) -> None:
        append_line(self.stats_path, json.dumps(record))

    def read_stats(self) -> list[dict]:
        """The records of stats.jsonl. A torn last line (the append a kill interrupted) is left out;
        a line before it that is not JSON is an error naming it."""
        return self._stats()[0]

    def _stats(self) -> tuple[list[dict], int]:
        """(records, lines that are not blank)."""
        if not self.stats_path.exists():
            return [], 0
        lines = [line for line in self.stats_path.read_text().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise RunDirError(f"{self.stats_path}, line {number}, is not JSON ({line[:60]!r}): the file "
                                      "was edited or damaged; delete that line (or the file: it is a log) and "
                                      "rerun") from None
        return records, len(lines)

    def drop_stats_after(self, step: int) -> int:
        """On resume, forget lines logged after the checkpoint (those steps are trained again) and a
        torn last line. Returns how many lines were dropped."""
        records, lines = self._stats()
        keep = [r for r in records if r.get("step", 0) <= step]
        if len(keep) != lines:
            atomic_write(self.stats_path, "".join(json.dumps(r) + "\n" for r in keep))
        return lines - len(keep)


def identity_differences(there: dict, asked: dict, where: str = "here", asked_as: str = "requested") -> list[str]:
    """What differs between two runs' identities ("section.key: X here, Y requested"), empty if they
    are the same run. A setting added since ``there`` was written stands at its default in it."""
    there = {section: dict(values) for section, values in deprecated.upgrade(there).items()}
    for section, kind in SECTIONS.items():
        if section in there:
            for f in dataclasses.fields(kind):
                if f.name in asked.get(section, {}):
                    there[section].setdefault(f.name, f.default)
    return [f"{section}.{key}: {there.get(section, {}).get(key)!r} {where}, {value!r} {asked_as}"
            for section in asked for key, value in asked[section].items()
            if there.get(section, {}).get(key) != value]


def check_checkpoint_identity(state: dict, path: Path, identity: dict, asked_as: str = "requested") -> None:
    """ConfigMismatch unless the checkpoint at ``path`` was written by the run ``identity`` describes:
    one copied in from another run would be resumed, or sampled, as this run without a word."""
    diffs = identity_differences(state.get("config", {}).get("identity", {}), identity, "in the checkpoint", asked_as)
    if diffs:
        raise ConfigMismatch(f"{path} was written by a different run than {path.parent.parent}'s config.json:\n  "
                             + "\n  ".join(diffs)
                             + f"\nMove it out of {path.parent}: the run then uses its own newest checkpoint.")


def model_args(identity: dict, derived: dict) -> dict:
    """The constructor arguments a run's settings imply: data sizes, conditioning, and its own ``model_args``."""
    model_cfg = identity["model"]
    kwargs = dict(input_size=derived["input_size"], in_channels=derived["in_channels"],
                  num_classes=derived["num_classes"], class_dropout_prob=model_cfg["class_dropout_prob"])
    if derived["d_context"]:
        kwargs.update(has_text=True, d_context=derived["d_context"])
    return {**kwargs, **model_cfg["model_args"]}


def model_from_config(resolved: dict):
    """The model a resolved run config describes (architecture only, fresh weights). The record of
    its constructor arguments (``derived.model_config``, the model's own ``config``) is used when
    present, so a run rebuilds exactly what it trained."""
    name, derived = resolved["identity"]["model"]["model"], resolved["derived"]
    if "model_config" in derived:
        spec = model_spec(name)
        return spec.cls(**spec.check_model_args(derived["model_config"]))
    return build_model(name, **model_args(resolved["identity"], derived))
