"""Grids, the launcher and its safety: idempotent reruns, locks, config mismatch, failures, tables."""

import fcntl
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import experiments.pipeline as pipeline
from experiments.grid import GridError
from experiments.grids import GRIDS
from experiments.launch import study_points
from experiments.point import PointJob
from experiments.run import main as run_main
from tests.markdown_table import rows
from tests.tiny_study import TINY


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch, no_debugger):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def test_ablation_grid_arms():
    points = GRIDS["ablations"].points("smoke", seeds=[0])
    assert [p.arm for p in points] == ["recipe", "skip_conn=False", "upsampler=pixelshuffle", "pos_emb=fixed",
                                       "timesteps=uniform", "z_gate=False"]
    recipe, pixelshuffle = points[0].settings, points[2].settings
    assert recipe.model_args == {"skip_conn": True, "use_convtranspose": True, "learn_pos_emb": True,
                                    "z_gate": True, "expand": 1, "d_state": 8}  # the scale's lean mixer
    assert pixelshuffle.model_args["use_convtranspose"] is False
    assert points[4].settings.train["timesteps"] == "uniform"
    assert len(GRIDS["ablations"].points("smoke", seeds=[0], factorial=True)) == 32
    assert [p.seed for p in GRIDS["ablations"].points("smoke", seeds=[0, 1])][:2] == [0, 1]


def test_smoke_scale_keeps_the_papers_structure():
    """Without skip connections all of the output passes the bottleneck: at smoke scale it must hold
    at least as many numbers as the velocity target, as USM-B/1's does on 32x32x4 latents (3x)."""
    from usm.data.datasets import open_dataset
    from usm.models.registry import build_model

    settings = GRIDS["ablations"].points("smoke")[0].settings
    channels = open_dataset(settings.data, settings.resolution).channels
    smoke = build_model(settings.model, input_size=settings.resolution, in_channels=channels).structure()
    paper = build_model("USM-B/1").structure()
    assert smoke["bottleneck_numbers"] >= smoke["target_numbers"]
    assert paper["bottleneck_over_target"] == 3.0
    assert smoke["patch"] == paper["patch"] == 1 and (smoke["depth"] - 1) % 6 == 0
    assert len(GRIDS["ablations"].scales["smoke"].seeds) >= 2


def test_mini_scale_keeps_the_papers_structure_on_real_latents(tmp_path):
    from usm.models.registry import build_model

    (tmp_path / "afhq").mkdir()
    points = GRIDS["ablations"].points("mini", sets={"data.afhq": str(tmp_path / "afhq")})
    settings = points[0].settings
    assert settings.latent == "sd-vae-ft-ema" and settings.resolution == 256 and settings.metric == "fid"
    mini = build_model(settings.model, input_size=settings.resolution // 8, in_channels=4).structure()
    assert mini["patch"] == 1 and mini["tokens"] == 1024 and mini["blocks_per_stage"] >= 2
    assert mini["bottleneck_numbers"] >= mini["target_numbers"]


def test_a_latent_studys_points_share_one_latent_cache_per_dataset(tmp_path):
    """The VAE encodes each image once for the whole study, not once per step of every point."""

    (tmp_path / "afhq").mkdir()
    points = GRIDS["ablations"].points("mini", sets={"data.afhq": str(tmp_path / "afhq")})
    caches = {p.settings.trainer_config(tmp_path / "ablations" / p.name).data.latent_cache for p in points}
    assert len(caches) == 1
    cache = Path(caches.pop())
    assert cache.parent == tmp_path / "ablations" / "latents" and "256px-sd-vae-ft-ema" in cache.name
    smoke = GRIDS["ablations"].points("smoke")[0]
    assert smoke.settings.trainer_config(tmp_path / "x" / smoke.name).data.latent_cache is None  # pixel space


@pytest.mark.slow
def test_adding_seeds_runs_only_the_new_points(tmp_path, capsys):
    results = tmp_path / "results"
    args = ["--grid", "ablations", "--cluster", "debug", "--results", str(results), "--only", "recipe", *TINY]
    assert run_main([*args, "--seeds", "0"]) == 0
    first = results / "ablations" / "recipe-s0" / "done"
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    assert run_main([*args, "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 point(s) to run, 1 done or running elsewhere" in out
    assert first.stat().st_mtime_ns == stamp and (results / "ablations" / "recipe-s1" / "done").exists()
    table = {row[0]: row for row in rows((results / "ablations" / "table.md").read_text())}
    assert table["recipe"][1] == "2" and {"data (held-out real)", "noise"} <= set(table)


@pytest.mark.parametrize("call, message", [
    (lambda: study_points("nope"), "unknown grid 'nope'; grids: ablations, control, paper"),
    (lambda: GRIDS["ablations"].points("huge"), "no scale 'huge'; valid: \\['cpu', 'mini', 'paper', 'smoke'\\]"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"model": "x"}), "--set model"),
    (lambda: GRIDS["paper"].points("paper"), "dataset 'afhq' is not a folder: give its path with --set data.afhq="),
    (lambda: GRIDS["ablations"].axis("depth"), "no axis 'depth'; axes: \\['skip_conn'"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"num_samples": 8}),
     "eval_samples=64: with eval_every, a whole number from 4"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"eval_every": 0}), "eval_every=0"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"eval_eery": 5}),
     "'eval_eery' names no setting; settings are model, data"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"train.timesteps": "uniform"}),
     "--set train.timesteps: the axis 'timesteps' sets it in every point"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"model_args.skip_conn": False}),
     "--set model_args.skip_conn: the axis 'skip_conn' sets it in every point"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"train.seed": 5}), "use --seeds"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"train.run_dir": "/tmp/x"}), "the point's folder decides it"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"train.model": "DiT-T/2"}), "the grid decides it"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"train.time_budget": 60}), "the job's --time"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"train.dry_run": True}),
     "one invocation of the trainer.*use run.py --dry-run"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"train.model_args": {"expand": 1}}), "model_args.ARG decides it"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"model_args.expnd": 1}), "no constructor argument 'expnd'"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"num_samples": "abc"}),
     "num_samples='abc': a whole number >= 4"),
    (lambda: GRIDS["ablations"].points("smoke", sets={"sample_steps": 0}), "sample_steps=0"),
])
def test_grids_are_validated_before_anything_launches(call, message):
    with pytest.raises(GridError, match=message):
        call()


def test_an_axis_sets_one_dotted_path_of_the_settings():
    from experiments.grid import Axis, Several
    from experiments.settings import Settings

    settings = Settings(model="USM-T/1", data="shapes", resolution=16, train={}, num_samples=8)
    settings = Axis("skip_conn", "model_args.skip_conn", {False: False}).apply(False, settings)
    settings = Axis("timesteps", "train.timesteps", {"uniform": "uniform"}).apply("uniform", settings)
    settings = Axis("model", "model", {"DiT": "DiT-T/2"}).apply("DiT", settings)
    assert (settings.model, settings.model_args, settings.train) == ("DiT-T/2", {"skip_conn": False},
                                                                     {"timesteps": "uniform"})
    text = Axis("dataset", "data", {"coco": Several({"data": "coco", "train.cond": "text"})}).apply("coco", settings)
    assert (text.data, text.train) == ("coco", {"timesteps": "uniform", "cond": "text"})
    with pytest.raises(GridError, match="axis 'depth': 'modle_args.depth' names no setting; settings are model"):
        Axis("depth", "modle_args.depth", {7: 7})
    with pytest.raises(GridError, match="axis 'dataset': 'train' names no setting"):
        Axis("dataset", "data", {"coco": Several({"data": "coco", "train": {"cond": "text"}})})


def test_a_model_argument_set_for_the_study_reaches_every_point():
    points = GRIDS["ablations"].points("smoke", sets={"model_args.expand": 1})
    assert {p.settings.model_args["expand"] for p in points} == {1}
    assert {p.settings.model_args["use_convtranspose"] for p in points} == {True, False}  # axes still apply


def test_paper_grid_takes_dataset_paths_and_text_tokens(tmp_path):
    for name in ("afhq", "celeba", "coco"):
        (tmp_path / name).mkdir()
    tokens = tmp_path / "tokens.npy"
    datasets = {"data.afhq": str(tmp_path / "afhq"), "data.celebahq": str(tmp_path / "celeba"),
                 "data.coco": str(tmp_path / "coco")}
    with pytest.raises(GridError, match="--set data.coco-tokens="):
        GRIDS["paper"].points("paper", sets=datasets)
    np.save(tokens, np.zeros((2, 77, 768), np.float32))
    points = GRIDS["paper"].points("paper", sets={**datasets, "data.coco-tokens": str(tokens)})
    assert len(points) == 9
    assert {p.settings.data for p in points} == {str(tmp_path / n) for n in ("afhq", "celeba", "coco")}
    assert {p.settings.model for p in points} == {"USM-B/1", "ZigMa-B/1", "DiT-B/2"}
    coco = [p for p in points if p.settings.data.endswith("coco")]
    assert all(p.settings.train["cond"] == "text" and p.settings.train["context"] == str(tokens) for p in coco)


UNCONDITIONAL = ("--only", "*dataset=shapes-s*")  # the paper grid's smoke points without text


def run(results, *extra, grid="paper", only=UNCONDITIONAL):
    selection = only if grid == "paper" else ()
    return run_main(["--grid", grid, "--cluster", "debug", "--results", str(results), *selection, *TINY, *extra])


@pytest.mark.slow
def test_study_runs_once_then_nothing_then_only_what_is_missing(tmp_path, capsys):
    results = tmp_path / "results"
    assert run(results) == 0
    out = capsys.readouterr().out
    assert "3 point(s) to run" in out and "the selected points are done" in out
    study = results / "paper"
    assert {"table.md", "table.tex", "table.csv"} <= {p.name for p in study.iterdir()}
    assert (study / "plots" / "loss_curves.png").exists()
    table = rows((study / "table.md").read_text())
    assert table[2][0] == "model=USM,dataset=shapes"  # the grid's order
    metrics = json.loads((study / "model=DiT,dataset=shapes-s0" / "metrics" / "quality.json").read_text())
    assert metrics["swd"] > 0 and metrics["num_samples"] == 8 and metrics["gflops"] > 0
    assert 0 <= metrics["precision"] <= 1 and metrics["shape_coverage_sampling_std"] >= 0
    # what the point cost, measured in the point: in quality.json and in the table, with the device named
    assert metrics["train_images_per_s"] > 0 and metrics["activation_mib"] > 0 and metrics["peak_rss_mib"] > 50
    assert 0 < metrics["sample_seconds_per_image"] < 60 and metrics["device"]
    assert {"train img/s", "act. MiB", "peak RSS MiB", "sample s/img"} <= set(table[0])
    assert f"measured in each point on {metrics['device']}" in (study / "table.md").read_text()
    # the learning curve: evaluated at step 2 (4 samples), and the first 4 final samples at step 4
    run_dir = study / "model=DiT,dataset=shapes-s0"
    curve = [json.loads((run_dir / "metrics" / "curve" / f"step-{s:09d}.json").read_text()) for s in (2, 4)]
    assert [c["step"] for c in curve] == [2, 4] and all(c["num_samples"] == 4 and "shape_coverage" in c for c in curve)
    assert json.loads((run_dir / "samples" / "curve" / "step-000000002" / "provenance.json").read_text())["step"] == 2
    assert (study / "curve.md").exists() and (study / "plots" / "learning_curves.png").exists()
    stamp = (study / "model=DiT,dataset=shapes-s0" / "done").stat().st_mtime_ns

    assert run(results) == 0
    assert "0 point(s) to run" in capsys.readouterr().out
    assert (study / "model=DiT,dataset=shapes-s0" / "done").stat().st_mtime_ns == stamp

    (study / "model=ZigMa,dataset=shapes-s0" / "done").unlink()
    assert run(results) == 0
    assert "1 point(s) to run" in capsys.readouterr().out

    assert run_main(["--grid", "paper", "--results", str(results), *UNCONDITIONAL, *TINY, "--status"]) == 0
    assert "done: 3  running: 0  failed: 0  pending: 0" in capsys.readouterr().out


@pytest.mark.slow
def test_a_different_config_in_an_existing_point_is_an_error(tmp_path, capsys):
    results = tmp_path / "results"
    assert run(results) == 0
    directory = results / "paper" / "model=USM,dataset=shapes-s0"
    (directory / "done").unlink()
    assert run(results, "train.lr=0.003") == 2
    assert "holds a different point" in capsys.readouterr().err  # refused before anything launched
    assert not (directory / "done").exists() and (directory / "checkpoints").exists()  # nothing lost


@pytest.mark.slow
def test_a_point_locked_by_another_launcher_is_left_alone(tmp_path, capsys):
    results = tmp_path / "results"
    from usm.cli import parse_assignments

    points = study_points("paper", "smoke", sets=parse_assignments(TINY[1:], "--set"))
    directory = results / "paper" / points[0]["name"]
    directory.mkdir(parents=True)
    with open(directory / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_main(["--grid", "paper", "--results", str(results), "--status", *UNCONDITIONAL, *TINY]) == 0
        assert f"running  {points[0]['name']}" in capsys.readouterr().out
        assert PointJob()(str(results), points[0]) == "busy"  # a duplicate job never runs it twice
        assert not (directory / "point.json").exists()  # and leaves nothing behind
        run(results)
        out = capsys.readouterr().out
        assert "2 point(s) to run, 1 done or running elsewhere" in out
        assert not (directory / "done").exists()


@pytest.mark.slow
def test_a_failing_point_is_reported_with_its_log_while_the_others_finish(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    real_measure = pipeline.measure

    def measure(directory, settings, model_config):
        if settings.model.startswith("ZigMa"):
            raise RuntimeError("simulated metric failure")
        return real_measure(directory, settings, model_config)

    monkeypatch.setattr(pipeline, "measure", measure)
    assert run(results) == 1
    out = capsys.readouterr().out
    assert "failed  model=ZigMa,dataset=shapes-s0" in out and "simulated metric failure" in out
    assert "log.txt" in out and "done: 2  running: 0  failed: 1" in out
    assert not (results / "paper" / "table.md").exists()  # tables only for a complete study
    monkeypatch.setattr(pipeline, "measure", real_measure)
    assert run(results) == 0  # the retry runs only the failed point, which resumes from its checkpoint
    assert (results / "paper" / "table.md").exists()


@pytest.mark.slow
def test_the_text_arm_trains_on_captions_and_samples_from_them(tmp_path, capsys):
    results = tmp_path / "results"
    assert run(results, only=("--only", "model=USM,dataset=shapes-text")) == 0
    directory = results / "paper" / "model=USM,dataset=shapes-text-s0"
    config = json.loads((directory / "config.json").read_text())
    assert config["identity"]["data"]["cond"] == "text" and config["derived"]["d_context"] == 32
    provenance = json.loads((directory / "samples" / "final" / "provenance.json").read_text())
    assert provenance["context_sha256"] == "captions"
    metrics = json.loads((directory / "metrics" / "quality.json").read_text())
    assert metrics["swd"] > 0
    from analysis.metrics.flops import count_registered  # the text branch is counted: the model as it trained

    text = count_registered("USM-T/2", input_size=32, in_channels=3, has_text=True, d_context=32)
    assert metrics["gflops"] == pytest.approx(text.gflops)


@pytest.mark.slow
def test_local_executor_runs_points_in_subprocesses(tmp_path):
    results = tmp_path / "results"
    assert run_main(["--grid", "paper", "--cluster", "local", "--parallel", "2", "--results", str(results),
                     "--only", "model=DiT,dataset=*-s0", *TINY]) == 0
    assert (results / "paper" / "table.md").exists()
    launch = json.loads((results / "paper" / "launches.jsonl").read_text().splitlines()[-1])
    points = list((results / "paper").glob("*/point.json"))
    assert len(launch["points"]) == len(points)
    assert launch["seconds"] >= max(launch["points"].values()) > 0
    assert f"Wall time of the last launch ({launch['date']}): {len(points)} points" in (
        results / "paper" / "table.md").read_text()
    shutil.rmtree(results / "paper" / ".submitit")


def test_a_points_sampling_and_fid_run_on_the_gpu_when_there_is_one(monkeypatch, tmp_path):
    """Sampling 5,000 images and computing FID on a CPU share of a GPU node would take hours."""
    import torch

    import analysis.metrics.fid

    settings = GRIDS["ablations"].points("smoke", seeds=[0])[0].settings
    assert settings.sample_config(tmp_path).device == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert settings.sample_config(tmp_path).device == "cuda"
    assert len({p.settings.sample_config(tmp_path).seed for p in GRIDS["ablations"].points("smoke")}) == 1
    asked = {}
    monkeypatch.setattr(analysis.metrics.fid, "compute_metrics", lambda *a, **kw: asked.update(kw) or {"fid": 1.0})
    assert pipeline.score(settings.set("metric", "fid"), np.zeros((4, 16, 16, 1)), tmp_path) == {"fid": 1.0}
    assert asked["device"] == "cuda" and asked["prc"] is True


def test_a_point_goes_on_only_after_pauses_at_its_evaluation_steps(monkeypatch, tmp_path):
    """Pauses at multiples of eval_every are evaluated (on rank 0) and resumed; a pause anywhere else
    (a time budget) or a divergence is an error, as without a learning curve."""
    import usm.training
    from usm.training.loop import Outcome

    settings = GRIDS["ablations"].points("smoke", seeds=[0], sets={"eval_every": 2})[0].settings
    evaluated = []
    monkeypatch.setattr(pipeline, "evaluate_during_training", lambda d, s: evaluated.append(d))
    for outcomes, evaluate, calls in (([Outcome("paused", 2), Outcome("done", 4)], True, 2),
                                      ([Outcome("paused", 2), Outcome("done", 4)], False, 0)):
        evaluated.clear()
        queue = list(outcomes)
        monkeypatch.setattr(usm.training, "train", lambda config, queue=queue: queue.pop(0))
        pipeline.train_point(tmp_path, settings, evaluate=evaluate)
        assert not queue and len(evaluated) == calls
    for outcome in (Outcome("paused", 3), Outcome("diverged", 2)):
        monkeypatch.setattr(usm.training, "train", lambda config, outcome=outcome: outcome)
        with pytest.raises(RuntimeError, match=f"training ended {outcome.status} at step {outcome.step}"):
            pipeline.train_point(tmp_path, settings)


def test_every_scale_a_grid_defines_can_be_launched(tmp_path, capsys):
    """--scale mini, the first GPU scale the README recommends, was refused by the command line."""
    afhq = tmp_path / "afhq"
    afhq.mkdir()
    assert run_main(["--grid", "ablations", "--scale", "mini", "--dry-run", "--set", f"data.afhq={afhq}"]) == 0
    assert "6 points (ablations, mini scale, local)" in capsys.readouterr().out  # one seed per arm there
    assert run_main(["--grid", "control", "--scale", "mini", "--dry-run"]) == 2
    assert "no scale 'mini'; valid: ['cpu', 'smoke']" in capsys.readouterr().err


def test_only_selects_by_name_arm_or_glob_never_by_substring(capsys):
    from experiments.run import main as run_main

    assert run_main(["--grid", "ablations", "--seeds", "1", "10", "--only", "recipe-s1", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "recipe-s1 " in listed and "recipe-s10" not in listed
    assert run_main(["--grid", "ablations", "--seeds", "1", "10", "--only", "recipe", "*pixel*", "--dry-run"]) == 0
    assert "4 points" in capsys.readouterr().out  # recipe's two seeds and pixelshuffle's
    assert run_main(["--grid", "ablations", "--only", "recip", "--dry-run"]) == 2
    assert "no point of ablations matches" in capsys.readouterr().err


class _RequeuedJob:
    """A SLURM job as submitit sees it across a requeue: result() raised for the first attempt, and the
    watcher reports the given states, one per call (the last repeats). ``finishes``: the point's
    ``done`` appears once SLURM reports the job RUNNING again."""

    job_id = "7"

    def __init__(self, directory: Path, states: list[str], finishes: bool = False):

        class Watcher:
            def get_state(self, job_id, mode="standard"):
                state = states.pop(0) if len(states) > 1 else states[0]
                if finishes and state == "RUNNING":  # what a point that finished leaves
                    (directory / "metrics").mkdir(exist_ok=True)
                    (directory / "metrics" / "quality.json").write_text("{}")
                    (directory / "done").write_text("")
                return state

        self.watcher = Watcher()

    def result(self):
        raise RuntimeError("Job 7 has not produced any output\n"
                           "srun: error: localhost: task 0: Exited with exit code 255")


def test_a_requeued_slurm_job_is_not_reported_failed_while_it_comes_back(tmp_path):
    """The launcher waits on the point's own files: a first attempt that ended without a result, while
    SLURM still requeues the job (FAILED for a moment, then PENDING), is no failure once the point is done."""
    from experiments.launch import _wait

    lines = []
    job = _RequeuedJob(tmp_path, ["FAILED", "PENDING", "PENDING", "RUNNING"], finishes=True)
    _wait(job, lines.append, tmp_path, settle_s=0.05, poll_s=0.01)
    assert lines == [] and (tmp_path / "done").exists()


@pytest.mark.parametrize("written", ["failed.json", None])
def test_a_slurm_job_that_really_died_is_reported_once_slurm_lets_it_go(tmp_path, written):
    from experiments.launch import _wait

    if written:
        (tmp_path / written).write_text("{}")
    lines = []
    _wait(_RequeuedJob(tmp_path, ["PENDING", "FAILED"]), lines.append, tmp_path, settle_s=0.05, poll_s=0.01)
    assert len(lines) == 1 and lines[0].startswith("job 7 failed: srun: error")


def test_a_point_done_without_readable_metrics_is_measured_again_not_shown_done(tmp_path):
    """A point with ``done`` but no (or a damaged) metrics/quality.json showed as done, and the table
    lost its quality columns while reporting 'incomplete 0'."""
    from analysis.report.collect import read_run
    from experiments.point import point_status

    (tmp_path / "point.json").write_text(json.dumps({"arm": "recipe", "seed": 0}))
    (tmp_path / "done").write_text("")
    assert point_status(tmp_path) == "pending" and read_run(tmp_path)["status"] == "incomplete"
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "quality.json").write_text('{"precision": 0.')
    assert point_status(tmp_path) == "pending"
    (tmp_path / "metrics" / "quality.json").write_text('{"precision": 0.5}')
    assert point_status(tmp_path) == "done" and read_run(tmp_path)["status"] == "done"


def test_a_damaged_point_json_is_one_line_before_anything_launches(tmp_path, capsys):
    directory = tmp_path / "ablations" / "recipe-s0"
    directory.mkdir(parents=True)
    (directory / "point.json").write_text('{"study": "abl')
    assert run_main(["--grid", "ablations", "--only", "recipe-s0", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "point.json is damaged" in err and "remove the point's folder" in err, err


def test_a_study_sends_its_runs_to_a_tracker_without_becoming_another_study(tmp_path):
    """log_with reaches every point's trainer; it is checked before launch, and a finished
    point rerun with a tracker is the same point (point.json leaves it out)."""
    from experiments.point import comparable, holds_other, take

    plain = GRIDS["ablations"].points("smoke", seeds=[0])[0]
    watched = GRIDS["ablations"].points("smoke", seeds=[0], sets={"log_with": "tensorboard"})[0]
    assert watched.settings.trainer_config(tmp_path).run.log_with == "tensorboard"
    assert plain.settings.trainer_config(tmp_path).run.log_with == "none"
    with pytest.raises(GridError, match="tensorbored"):
        GRIDS["ablations"].points("smoke", seeds=[0], sets={"log_with": "tensorbored"})
    take(tmp_path, comparable(plain.to_dict())).close()
    assert not holds_other(tmp_path, {**watched.to_dict(), "name": watched.name})
    other = GRIDS["ablations"].points("smoke", seeds=[0], sets={"num_samples": 64})[0]
    assert holds_other(tmp_path, {**other.to_dict(), "name": other.name})
