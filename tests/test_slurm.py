"""The launcher on a real one-node SLURM cluster (.ci/run starts it: slurm/local_cluster.sh)."""

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from experiments.run import main as run_main
from usm.training.checkpoint import save_checkpoint


def slurm_running() -> str:
    if not shutil.which("sinfo"):
        return "SLURM is not installed (apt-get install slurmctld slurmd slurm-client munge)"
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set: start a cluster with `source slurm/local_cluster.sh start`"
    probe = subprocess.run(["sinfo", "-h"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"no SLURM controller answers: {probe.stderr.strip()}"


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(slurm_running()), reason=slurm_running() or "ok")]

TINY = ["train.max_steps=4", "train.ckpt_every=2", "num_samples=8", "sample_steps=2",
        "eval_samples=8"]


def slurm(results, *extra, sets=TINY, grid="paper"):
    only = ["--only", "*dataset=shapes-s*"] if grid == "paper" else []  # the three unconditional smoke points
    return run_main(["--grid", grid, "--cluster", "slurm", "--results", str(results), "--cpus", "1", "--time", "10",
                     "--parallel", "2", *only, *extra, "--set", *sets])


def test_smoke_grid_completes_as_one_job_array(tmp_path, capsys):
    assert slurm(tmp_path) == 0
    out = capsys.readouterr().out
    assert "submitted job array" in out and "(3 tasks, 2 at a time)" in out and "done: 3" in out
    assert (tmp_path / "paper" / "table.md").exists()
    assert slurm(tmp_path) == 0 and "0 point(s) to run" in capsys.readouterr().out


def test_a_failing_point_is_reported_with_its_log_while_the_others_finish(tmp_path, capsys):
    broken = tmp_path / "paper" / "model=ZigMa,dataset=shapes-s0" / "checkpoints"
    save_checkpoint(broken, 1, {"model": {}})  # a checkpoint of something else: strict loading fails
    assert slurm(tmp_path) == 1
    out = capsys.readouterr().out
    assert "done: 2  running: 0  failed: 1" in out
    failed = json.loads((broken.parent / "failed.json").read_text())
    assert failed["log"].endswith("log.txt") and failed["job_log"].endswith(".err")
    assert os.path.exists(failed["job_log"])
    assert "failed  model=ZigMa,dataset=shapes-s0" in out and failed["job_log"] in out


def preempt_once(run_dir, timeout=600):
    """Send SIGUSR2 -- what SLURM sends a job before its time limit or a preemption -- to every job of
    the cluster, once the run's first checkpoint exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((run_dir / "checkpoints").glob("step_*.pt.sha256")):
            for job in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split():
                subprocess.run(["scancel", "--signal", "USR2", job], capture_output=True)
            return
        time.sleep(0.5)


def test_a_signalled_job_requeues_and_resumes(tmp_path, capsys):
    """The job is signalled once, after its first checkpoint: it requeues and the requeued job resumes
    from the trainer's checkpoint to completion. One requeue however fast or loaded the machine is
    (a time-limit version of this test needed a requeue every minute until 400 steps were done)."""
    run_dir = tmp_path / "ablations" / "recipe-s0"
    signaller = threading.Thread(target=preempt_once, args=(run_dir,), daemon=True)
    signaller.start()
    sets = ["train.max_steps=100", "train.ckpt_every=10", "num_samples=8", "sample_steps=2",
        "eval_samples=8"]
    code = run_main(["--grid", "ablations", "--only", "recipe", "--seeds", "0", "--cluster", "slurm",
                     "--results", str(tmp_path), "--cpus", "2", "--time", "30", "--set", *sets])
    assert code == 0, capsys.readouterr().out
    log = (run_dir / "log.txt").read_text()
    assert "resumed from" in log and "finished: step 100" in log


def test_a_point_can_train_on_several_tasks(tmp_path, capsys):
    """Two tasks on the one node: submitit's environment becomes torch.distributed's (gloo on CPU)."""
    sets = ["train.max_steps=4", "train.ckpt_every=2", "num_samples=8", "sample_steps=2",
        "eval_samples=8"]
    code = run_main(["--grid", "ablations", "--only", "recipe", "--seeds", "0", "--cluster", "slurm",
                     "--results", str(tmp_path), "--tasks", "2", "--cpus", "1", "--time", "10", "--set", *sets])
    assert code == 0, capsys.readouterr().out
    from usm.training.run_dir import RunDir

    stats = RunDir(tmp_path / "ablations" / "recipe-s0").read_stats()
    assert stats[-1]["images_seen"] == 4 * 8 * 2  # steps x batch x processes
