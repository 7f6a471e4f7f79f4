"""The one launcher: a grid's missing points go to a submitit executor -- local, debug or slurm.

    >>> from experiments.launch import study_points
    >>> [p["name"] for p in study_points("ablations", "smoke")][:3]
    ['recipe-s0', 'recipe-s1', 'skip_conn=False-s0']

Local and SLURM differ by the executor's name only. On SLURM the grid goes out as one job array
(``--parallel`` = its array parallelism); locally, points run ``--parallel`` at a time. Points already
done are never launched again, running ones (lock held) are left alone, failed and pending ones are
(re)launched. When every point is done the study's tables and plots are written to
``results/<study>/``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import submitit

from analysis.report.collect import stored_point, stray
from experiments.grid import GridError
from experiments.grids import GRIDS
from experiments.point import (
    PointJob,
    PointMismatch,
    check_same_point,
    comparable,
    holds_other,
    point_dir,
    point_status,
    setting_differences,
)
from usm import deprecated
from usm.files import atomic_write, check_writable, point_name, read_json, remove_dead_temps
from usm.locks import is_held
from usm.threads import cpu_share, split_cpus

SLURM_FLAGS = {  # launcher flag -> submitit parameter
    "partition": "slurm_partition", "gpus": "gpus_per_node", "cpus": "cpus_per_task", "mem_gb": "mem_gb",
    "time": "timeout_min", "account": "slurm_account", "qos": "slurm_qos", "constraint": "slurm_constraint",
    "signal_delay": "slurm_signal_delay_s", "tasks": "tasks_per_node",
}


def study_points(grid: str, scale: str = "smoke", seeds=None, factorial: bool = False, sets=None) -> list[dict]:
    if grid not in GRIDS:
        raise GridError(f"unknown grid {grid!r}; grids: {', '.join(sorted(GRIDS))}")
    points = GRIDS[grid].points(scale, seeds, factorial, sets)
    # order: the arm's row in tables. It depends on the arm alone, so adding seeds to a study leaves
    # the points already run (and their point.json) as they were.
    arms = list(dict.fromkeys(p.arm for p in points))
    return [{**p.to_dict(), "name": p.name, "order": arms.index(p.arm)} for p in points]


def statuses(results: str, points: list[dict]) -> list[tuple[dict, str, Path]]:
    """(point, status, directory) per point; ``differs`` when the directory holds other settings."""
    out = []
    for point in points:
        directory = point_dir(results, point)
        out.append((point, "differs" if holds_other(directory, point) else point_status(directory), directory))
    return out


def format_status(rows) -> str:
    lines = []
    for point, status, directory in rows:
        extra = ""
        if status == "failed":
            info = read_json(directory / "failed.json", "it is a report: delete it and rerun the point")
            job_log = f", job log: {info['job_log']}" if info["job_log"] else ""
            extra = f"  {info['error']}  (log: {info['log']}{job_log})"
        elif status == "differs":
            extra = "  holds a point with other settings (point.json): its results are not these"
        lines.append(f"{status:>8}  {point['name']:<40} {directory}{extra}")
    counts = {s: sum(1 for _, st, _ in rows if st == s) for s in ("done", "running", "failed", "pending")}
    differs = sum(1 for _, st, _ in rows if st == "differs")
    lines.append("  ".join(f"{k}: {v}" for k, v in counts.items()) + (f"  differs: {differs}" if differs else ""))
    return "\n".join(lines)


# A 400k-step run on a preemptible cluster is requeued many times; submitit's default gives up after 3.
MAX_REQUEUES = 20


def make_executor(cluster: str, folder: Path, parallel: int, slurm: dict, extra_sbatch: list[str]):
    extra = {"slurm_max_num_timeout": int(slurm.get("max_requeues") or MAX_REQUEUES)} if cluster == "slurm" else {}
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster, **extra)
    params = {"timeout_min": slurm.get("time") or 60 * 24}
    if cluster == "slurm":
        params.update({SLURM_FLAGS[k]: v for k, v in slurm.items() if v is not None and k in SLURM_FLAGS})
        params["slurm_array_parallelism"] = parallel
        if extra_sbatch:
            params["slurm_additional_parameters"] = dict(line.split("=", 1) for line in extra_sbatch)
    executor.update_parameters(**params)
    return executor


def migrate_study(study_dir: Path, log=print) -> list[str]:
    """Rename the points stored under an old arm name (``skip_gate=True`` is ``z_gate=False`` now,
    ``usm/deprecated.py``): the folder and its point.json take the new name and spellings, so the study
    resumes them instead of training them again. A point that is running, or whose new folder exists
    already, is left as it is (and named). Returns the new names."""
    renamed = []
    for spec in sorted(study_dir.glob("*/point.json")) if study_dir.is_dir() else []:
        stored = stored_point(spec.parent)  # None: damaged; its own point's check names it when that point runs
        if stored is None or stray(spec.parent, warn=False):
            continue  # a copy (check_existing warns about it) or a damaged point.json
        arm = deprecated.arm(stored["arm"])
        old, target = spec.parent, study_dir / point_name(arm, stored["seed"])
        if old == target:  # nothing to rename; a rename killed before it rewrote point.json is finished
            if arm != stored["arm"] and not is_held(old / "lock"):
                atomic_write(spec, json.dumps({**deprecated.upgrade(stored), "arm": arm}, indent=2))
                log(f"rewrote {spec.parent.name}/point.json in the arm's new spelling")
            continue
        if target.exists() or is_held(old / "lock"):
            why = f"its new folder {target.name} exists" if target.exists() else "it is running"
            log(f"left {old.name} as it is: {why}")
            continue
        # the folder first: a point.json still in the old spelling reads as the same point (upgrade), and
        # the point's next run writes it again
        old.rename(target)
        atomic_write(target / "point.json", json.dumps({**deprecated.upgrade(stored), "arm": arm}, indent=2))
        log(f"renamed {old.name} -> {target.name} (the arm's new spelling)")
        renamed.append(target.name)
    return renamed


def check_existing(results: str, points: list[dict], study: list[dict] | None = None) -> None:
    """Refuse, before launching anything, a point whose directory holds another config, and a study
    folder holding any point (selected or not) whose settings differ from this launch's for its arm:
    one study is one set of settings, so its table never sets arms trained differently side by side.
    ``study``: every point of the launch before ``--only`` picked some (default: ``points``)."""
    for point in points:
        directory = point_dir(results, point)
        check_same_point(directory, point)
    by_arm = {p["arm"]: p for p in study or points}
    study_dir = Path(results) / points[0]["study"]
    for spec in sorted(study_dir.glob("*/point.json")) if study_dir.is_dir() else []:
        if stray(spec.parent):
            continue
        try:
            other = comparable(json.loads(spec.read_text()))  # in today's spellings
        except (OSError, ValueError, AttributeError):
            continue  # a damaged point.json: its own point's check names it when that point runs
        mine = by_arm.get(other.get("arm"))
        if mine is None:
            raise PointMismatch(f"{study_dir} holds {spec.parent.name}, an arm this launch does not have (another "
                                "scale, grid or --factorial): one study folder holds one launch's settings; use "
                                "another --results")
        differing = setting_differences(other.get("settings", {}), comparable(mine)["settings"])
        if differing:
            raise PointMismatch(f"{study_dir} holds {spec.parent.name}, trained with other settings ("
                                + "; ".join(differing[:4]) + (" ..." if len(differing) > 4 else "")
                                + "): its table would compare unlike arms; use another --results, or the "
                                "same settings")


def launch(points: list[dict], results: str, cluster: str = "local", parallel: int = 1, slurm: dict | None = None,
           extra_sbatch=(), wait: bool = True, log=print, partial: bool = False,
           study: list[dict] | None = None) -> list[tuple[dict, str, Path]]:
    """Run the points that are not done. ``partial``: they are a selection (``--only``) of the study,
    whose every point is ``study``."""
    check_writable(Path(results) / points[0]["study"], "--results", "the study's results")
    migrate_study(Path(results) / points[0]["study"], log)
    check_existing(results, points, study)
    rows = statuses(results, points)
    todo = [p for p, status, _ in rows if status in ("pending", "failed")]
    skipped = len(rows) - len(todo)
    log(f"{len(todo)} point(s) to run, {skipped} done or running elsewhere")
    if todo:
        started = time.monotonic()
        prepare(todo, log)
        study_dir = Path(results) / points[0]["study"]
        executor = make_executor(cluster, study_dir / ".submitit", parallel, slurm or {}, list(extra_sbatch))
        job = PointJob()
        if cluster == "slurm":
            jobs = executor.map_array(job, [results] * len(todo), todo)
            log(f"submitted job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks, {parallel} at a time)")
            if wait:
                for submitted, point in zip(jobs, todo):
                    _wait(submitted, log, point_dir(results, point))
        elif cluster == "debug":  # runs in this process, one point after the other
            for point in todo:
                _wait(executor.submit(job, results, point), log)
        elif wait:
            seconds = _run_pool(executor, job, results, todo, parallel, log)
            record_launch(study_dir, time.monotonic() - started, seconds, parallel)
        else:
            for point in todo:
                executor.submit(job, results, point)
    rows = statuses(results, points)
    if all(status == "done" for _, status, _ in rows):
        finish(results, points[0]["study"], log, partial)
    return rows


def prepare(points: list[dict], log=print) -> None:
    """Work every point would otherwise repeat, done once before they start: the quality metric's
    calibration (real-vs-real floor, noise ceiling) and, on the embedded data, the shape classifier;
    and the weights the points will need (the VAE, Inception for FID), checked before any trains."""
    from analysis.metrics.fid import inception_weights
    from analysis.metrics.quality import calibration
    from usm.data.latents import check_vae

    for latent in sorted({p["settings"]["latent"] for p in points} - {"none"}):
        check_vae(latent)  # an hour of training must not end at a missing file
    if any(p["settings"]["metric"] == "fid" for p in points):
        inception_weights()
    needed = {(p["settings"]["data"], p["settings"]["resolution"], p["settings"]["num_samples"])
              for p in points if p["settings"]["metric"] == "pixel"}
    for data, resolution, count in sorted(needed):
        log(f"calibrating the quality metrics on {data} ({resolution} px, {count} images; cached after the first time)")
        calibration(data, resolution, count)


def record_launch(study_dir: Path, seconds: float, point_seconds: dict[str, float], parallel: int) -> None:
    """Append what a local launch took to ``STUDY/launches.jsonl`` (its wall time, from the
    calibration to the last point's end, and each point's), which the study table's caption reports."""
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() - seconds)),  # its start
              "seconds": round(seconds, 1),
              "parallel": parallel, "cpus": len(cpu_share()),
              "points": {name: round(value, 1) for name, value in point_seconds.items()}}
    with open(study_dir / "launches.jsonl", "a") as f:  # one short line per launch: an append is enough
        f.write(json.dumps(record) + "\n")


def _run_pool(executor, job, results: str, todo: list[dict], parallel: int, log) -> dict[str, float]:
    """Keep ``parallel`` points running, each pinned to its own share of this process's CPUs
    (``USM_CPUS``), starting the next point as soon as one ends. Returns each point's wall seconds."""
    shares, gpus = split_cpus(cpu_share(), parallel), visible_gpus()
    free, running, queue = list(range(len(shares))), {}, list(todo)
    saved = {key: os.environ.get(key) for key in ("USM_CPUS", "CUDA_VISIBLE_DEVICES")}
    started, finished, seconds = time.monotonic(), 0, {}
    try:
        while queue or running:
            while queue and free:
                slot = free.pop(0)
                os.environ["USM_CPUS"] = shares[slot]  # the local executor copies the environment
                if gpus:  # one GPU a point (round-robin when --parallel asks for more points than GPUs)
                    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                point = queue.pop(0)
                running[slot] = (executor.submit(job, results, point), point["name"], time.monotonic())
            time.sleep(0.5)
            for slot, (submitted, name, since) in list(running.items()):
                if submitted.done():
                    _wait(submitted, log)
                    del running[slot]
                    free.append(slot)
                    finished += 1
                    seconds[name] = time.monotonic() - since
                    log(f"[{finished}/{len(todo)}] {name} ended after {seconds[name]:.0f} s "
                        f"(CPUs {shares[slot]}; {time.monotonic() - started:.0f} s since launch)")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return seconds


def visible_gpus() -> list[str]:
    """The CUDA devices this process may give its points, by the names CUDA_VISIBLE_DEVICES takes."""
    import torch

    if not torch.cuda.is_available():
        return []
    named = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return named[:torch.cuda.device_count()] if named else [str(i) for i in range(torch.cuda.device_count())]


def default_parallel(cluster: str) -> int:
    """Points at once when --parallel is not given: locally one per GPU on a GPU node (each point
    pinned to its own, its img/s not shared), else one per CPU (one thread each); 1 otherwise."""
    if cluster != "local":
        return 1
    return len(visible_gpus()) or len(cpu_share())


# SLURM states in which a job may still run (again). submitit's own list lacks the requeue states, and
# sacct can show a requeued job as FAILED for a moment before it is PENDING again.
LIVE_STATES = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED", "CONFIGURING",
               "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}
SETTLE_S = 600  # how long a job that died without a word may take to come back from a requeue


def _wait(job, log, directory: Path | None = None, settle_s: float = SETTLE_S, poll_s: float = 5.0) -> None:
    """Wait for the job; a job that raised is reported as failed only once its point says so.

    A SLURM job preempted or signalled requeues itself: its first attempt ends without a result, and
    submitit's ``result()`` raises while SLURM still has to start the second. So when ``directory`` (the
    point's folder) is given, the point's own files decide: ``done`` or ``failed.json``. A job that left
    neither is waited for while SLURM reports it live, and for ``settle_s`` after it last did.
    """
    try:
        job.result()
    except Exception as exc:  # the point wrote failed.json; the others go on
        if directory is not None and _settle(job, directory, settle_s, poll_s) == "done":
            return
        log(f"job {job.job_id} failed: {str(exc).splitlines()[-1] if str(exc) else type(exc).__name__}")


def _settle(job, directory: Path, settle_s: float, poll_s: float) -> str:
    """The point's status once it is done or failed, or once SLURM has not had the job live for settle_s."""
    deadline = time.monotonic() + settle_s
    while True:
        status = point_status(directory)
        if status in ("done", "failed") or time.monotonic() > deadline:
            return status
        if status == "running" or job.watcher.get_state(job.job_id, mode="force").upper() in LIVE_STATES:
            deadline = time.monotonic() + settle_s
        time.sleep(poll_s)


def finish(results: str, study: str, log=print, partial: bool = False) -> None:
    from analysis.report.plots import write_plots
    from analysis.report.tables import write_tables

    study_dir = Path(results) / study
    for folder in (study_dir, study_dir / "plots"):
        remove_dead_temps(folder)  # a table or plot writer that was killed
    paths = write_tables(study_dir)
    plots = write_plots(study_dir, results)
    what = ("the selected points are done (--only: the tables hold every finished point of the study)" if partial
            else "study complete")
    log(f"{what}: {paths['md']}, {paths['tex']}, {paths['csv']} and {len(plots)} plot files in {study_dir / 'plots'}")
