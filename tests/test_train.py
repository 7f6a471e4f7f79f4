"""The trainer: runs, resumes bitwise after SIGKILL, stops cleanly, refuses bad input, trains."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import usm.train as train_module
import usm.training.loop as loop
from usm.rectified_flow import training_loss
from usm.seeding import derive_seed, generator
from usm.train import main
from usm.training.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from usm.training.run_dir import RunDir, model_from_config


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def args(run_dir, *extra, model="DiT-T/2", steps=6):
    return ["--model", model, "--data", "shapes", "--run-dir", str(run_dir), "--max-steps", str(steps),
            "--batch-size", "4", "--seed", "0", "--ckpt-every", "3", "--log-every", "1", *extra]


def weights(run_dir, part="model"):
    return latest_checkpoint(RunDir(run_dir).checkpoints)[1][part]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_corrupt_newest_checkpoint_falls_back_and_keep_limits(tmp_path, caplog):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"step": step}, keep=3)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_000000002.pt", "step_000000003.pt", "step_000000004.pt"]
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:-5])  # truncated
    (tmp_path / "step_000000009.pt").write_bytes(b"partial")  # a write killed before its checksum
    step, state, _ = latest_checkpoint(tmp_path)
    assert step == 3 and state == {"step": 3}
    assert "does not match its checksum" in caplog.text and "no checksum file" in caplog.text


def test_a_checkpoint_deleted_by_keep_while_a_sampler_reads_it_is_not_broken(tmp_path, monkeypatch, caplog):
    """A trainer with --keep 1 deletes the checkpoint a sampler has just listed: the reader lists the
    folder again and takes the new one, with no 'skipping checkpoint' warning (it used to race on the
    .sha256 file and report the deleted checkpoint as broken)."""
    import usm.training.checkpoint as checkpoint

    save_checkpoint(tmp_path, 2, {"step": 2})
    read = checkpoint.load_verified

    def trainer_saves_meanwhile(path, map_location="cpu"):
        if path.name == "step_000000002.pt":
            save_checkpoint(tmp_path, 4, {"step": 4}, keep=1)
        return read(path, map_location)

    monkeypatch.setattr(checkpoint, "load_verified", trainer_saves_meanwhile)
    step, state, _ = latest_checkpoint(tmp_path)
    assert step == 4 and state == {"step": 4} and "skipping" not in caplog.text


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path, capsys):
    assert main(args(tmp_path / "run", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert '"model": "DiT-T/2"' in out and '"in_channels": 3' in out
    assert not (tmp_path / "run").exists()


def test_run_files_stats_and_resume_cleanup(tmp_path):
    run = tmp_path / "run"
    assert main(args(run, steps=6)) == 0
    files = RunDir(run)
    assert files.config_path.exists() and files.log_path.exists()
    stats = files.read_stats()
    assert [s["step"] for s in stats] == list(range(1, 7))
    assert {"loss", "lr", "grad_norm", "steps_per_s", "images_seen"} <= stats[0].keys()
    assert stats[-1]["images_seen"] == 24
    # Lose the last checkpoint: the rerun resumes at 3, drops the stale lines and logs 4..6 again.
    for path in list_checkpoints(files.checkpoints)[-1:]:
        path.unlink()
    assert main(args(run, steps=6)) == 0
    assert [s["step"] for s in files.read_stats()] == list(range(1, 7))
    assert main(args(run, steps=6)) == 0  # finished: nothing to do
    assert latest_checkpoint(files.checkpoints)[0] == 6


def test_invocation_limits_then_identical_to_one_go(tmp_path):
    assert main(args(tmp_path / "whole", steps=7)) == 0
    codes = [main(args(tmp_path / "parts", "--max-steps-per-invocation", "3", steps=7)) for _ in range(3)]
    assert codes == [train_module.EXIT_PAUSED, train_module.EXIT_PAUSED, 0]
    assert latest_checkpoint(RunDir(tmp_path / "parts").checkpoints)[0] == 7
    for part in ("model", "ema"):
        assert_same_weights(weights(tmp_path / "whole", part), weights(tmp_path / "parts", part))


def test_pause_every_stops_at_each_multiple_and_ends_identical_to_one_go(tmp_path):
    run = tmp_path / "paused"
    steps = []
    for _ in range(4):
        main(args(run, "--pause-every", "2", steps=7))
        steps.append(latest_checkpoint(RunDir(run).checkpoints)[0])
    assert steps == [2, 4, 6, 7]  # each invocation ends at the next multiple, the last at max_steps
    assert main(args(tmp_path / "whole", steps=7)) == 0
    assert_same_weights(weights(tmp_path / "whole"), weights(run))


def test_arms_of_one_seed_share_every_random_draw(tmp_path, monkeypatch):
    """Common random numbers: two models trained with the same seed see the same images, flips,
    noise and timesteps at every step (so a difference between arms is not a difference of draws)."""
    seen = []

    def recording(model, x1, cond=None, scheme="logit_normal", generator=None):
        if torch.is_grad_enabled():  # a training step's (not the check of the last update's loss)
            state = generator.get_state()
            eps = torch.randn(x1.shape, generator=generator)
            seen.append((x1.clone(), eps, torch.rand(3, generator=generator)))
            generator.set_state(state)
        return training_loss(model, x1, cond, scheme, generator)

    monkeypatch.setattr(loop, "training_loss", recording)
    assert main(args(tmp_path / "a", model="USM-T/2", steps=3)) == 0
    assert main(args(tmp_path / "b", "--model-arg", "skip_conn=false", "use_convtranspose=false", model="USM-T/2",
                     steps=3)) == 0
    assert len(seen) == 6
    for (xa, ea, ta), (xb, eb, tb) in zip(seen[:3], seen[3:]):
        assert torch.equal(xa, xb) and torch.equal(ea, eb) and torch.equal(ta, tb)
    assert not torch.equal(seen[0][0], seen[1][0])  # and the draws do change from step to step


def test_a_torn_last_stats_line_is_dropped_on_resume_and_a_bad_earlier_one_named(tmp_path):
    from usm.training.run_dir import RunDirError

    assert main(args(tmp_path / "run", steps=3)) == 0
    stats = tmp_path / "run" / "stats.jsonl"
    with open(stats, "a") as f:
        f.write('{"step": 4, "lo')  # a kill during the append
    assert [r["step"] for r in RunDir(tmp_path / "run").read_stats()] == [1, 2, 3]
    assert main(args(tmp_path / "run", steps=5)) == 0  # resumes; the torn line is gone
    assert [r["step"] for r in RunDir(tmp_path / "run").read_stats()] == [1, 2, 3, 4, 5]
    stats.write_text(stats.read_text().replace('{"step": 2', '{"step": 2 oops', 1))
    with pytest.raises(RunDirError, match="stats.jsonl, line 2, is not JSON"):
        RunDir(tmp_path / "run").read_stats()


def test_time_budget_ends_the_invocation_with_a_checkpoint(tmp_path):
    assert main(args(tmp_path / "run", "--time-budget", "0", steps=50)) == train_module.EXIT_PAUSED
    assert latest_checkpoint(RunDir(tmp_path / "run").checkpoints)[0] == 1


def test_changed_config_in_an_existing_run_is_an_error(tmp_path, capsys):
    assert main(args(tmp_path / "run", steps=3)) == 0
    assert main(args(tmp_path / "run", "--lr", "0.001", steps=3)) == 2
    assert "train.lr: 0.0001 here, 0.001 requested" in capsys.readouterr().err
    assert main(args(tmp_path / "run", "--log-every", "2", steps=5)) == 0  # runtime fields may change


def test_a_run_begun_before_a_setting_existed_resumes_with_its_default(tmp_path):
    """config.json of an older run lacks settings added since (lr_schedule): they read as their
    defaults, so the same command resumes it; asking for another value is still a different run."""
    import json

    run = RunDir(tmp_path / "run")
    assert main(args(run.path, steps=3)) == 0
    config = json.loads(run.config_path.read_text())
    del config["identity"]["train"]["lr_schedule"]
    run.config_path.write_text(json.dumps(config))
    assert main(args(run.path, steps=5)) == 0
    assert main(args(run.path, "--lr-schedule", "cosine", steps=6)) == 2


def test_the_cosine_schedule_decays_the_learning_rate_to_the_last_step(tmp_path):
    run = tmp_path / "run"
    assert main(args(run, "--lr-schedule", "cosine", "--warmup-steps", "2", "--lr", "0.001", steps=6)) == 0
    lrs = [s["lr"] for s in RunDir(run).read_stats()]  # logged after each step: the next step's rate
    assert lrs[0] == pytest.approx(1e-3)  # warm-up done
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:])) and 0 <= lrs[-1] < 1e-4


def test_bad_data_is_reported(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "flat").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "flat" / "a.png")
    assert main(["--data", str(tmp_path / "flat"), "--cond", "class", "--run-dir", str(tmp_path / "r2")]) == 2
    assert "needs labels" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}

    def flaky_loss(*a, **k):
        calls["n"] += 1
        loss = training_loss(*a, **k)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(loop, "training_loss", flaky_loss)
    assert main(args(tmp_path / "run", steps=10)) == train_module.EXIT_DIVERGED
    step, state, _ = latest_checkpoint(RunDir(tmp_path / "run").checkpoints)
    assert step == 3 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert "non-finite loss" in (tmp_path / "run" / "log.txt").read_text()


def test_a_non_finite_loss_between_checks_is_found_at_the_next_check_and_never_saved(tmp_path, monkeypatch):
    """The host syncs on the stop flags every --log-every steps and before every checkpoint: a NaN at
    step 4 (the fifth) with checks at 6 (a checkpoint) and 8 stops at the first, names step 4, and
    leaves the step-3 checkpoint the newest."""
    calls = {"n": 0}

    def flaky_loss(*a, **k):
        calls["n"] += 1
        loss = training_loss(*a, **k)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(loop, "training_loss", flaky_loss)
    run = tmp_path / "run"
    assert main(args(run, "--log-every", "4", steps=10)) == train_module.EXIT_DIVERGED
    assert calls["n"] == 6  # trained on to the check at step 6, no further
    assert latest_checkpoint(RunDir(run).checkpoints)[0] == 3
    assert "non-finite loss or weights at step 4" in (run / "log.txt").read_text()


def fixed_batch_loss(model, seed=0, data="shapes", size=32):
    """Loss on a fixed batch, fixed noise and times: lower is better, with no sampling noise."""
    from usm.data.embedded import EMBEDDED

    images = torch.from_numpy(EMBEDDED[data].images(size)[0][:64]).permute(0, 3, 1, 2).float() / 127.5 - 1
    model.eval()
    with torch.no_grad():
        return sum(training_loss(model, images, generator=generator(seed, "eval", k)).item() for k in range(4)) / 4


@pytest.mark.parametrize("model", ["USM-T/2", "ZigMa-T/2", "DiT-T/2"])
@pytest.mark.slow
def test_tiny_models_learn_on_the_embedded_data(tmp_path, model):
    run = tmp_path / "run"
    assert main(args(run, "--lr", "1e-3", "--batch-size", "8", model=model, steps=40)) == 0
    resolved = RunDir(run).read_config()
    torch.manual_seed(derive_seed(0, "init"))
    initial = model_from_config(resolved)  # the trainer's initial weights, rebuilt
    trained = model_from_config(resolved)
    trained.load_state_dict(weights(run))
    before, after = fixed_batch_loss(initial), fixed_batch_loss(trained)
    assert after < 0.8 * before, (before, after)


@pytest.mark.slow
def test_the_diffusers_control_model_learns_the_digits_through_the_same_trainer(tmp_path):
    run = tmp_path / "run"
    assert main(args(run, "--data", "digits", "--resolution", "16", "--lr", "1e-3", "--batch-size", "8",
                     model="UNet-T", steps=30)) == 0
    resolved = RunDir(run).read_config()
    assert resolved["derived"]["in_channels"] == 1 and resolved["derived"]["dataset_size"] == 1497
    torch.manual_seed(derive_seed(0, "init"))
    initial = model_from_config(resolved)
    trained = model_from_config(resolved)
    trained.load_state_dict(weights(run))
    before, after = (fixed_batch_loss(m, data="digits", size=16) for m in (initial, trained))
    assert after < 0.8 * before, (before, after)


def test_the_control_model_refuses_conditioning(tmp_path, capsys):
    from usm.data.shapes import export_folder

    root = export_folder(tmp_path / "img", count=8)
    assert main(args(tmp_path / "run", "--data", str(root), "--cond", "class", model="UNet-T", steps=1)) != 0
    assert "unconditional" in capsys.readouterr().err


@pytest.mark.parametrize("cond", ["class", "text"])
def test_conditional_training(tmp_path, cond):
    from usm.data.shapes import export_folder

    root = export_folder(tmp_path / "img", count=24)
    extra = ["--data", str(root), "--cond", cond]
    if cond == "text":
        np.save(tmp_path / "ctx.npy", np.random.default_rng(0).normal(size=(24, 3, 8)).astype(np.float32))
        extra += ["--context", str(tmp_path / "ctx.npy")]
    assert main(args(tmp_path / "run", *extra, model="USM-T/2", steps=3)) == 0
    derived = RunDir(tmp_path / "run").read_config()["derived"]
    assert (derived["num_classes"], derived["d_context"]) == ((4, 0) if cond == "class" else (0, 8))


@pytest.mark.slow
def test_latent_training_through_a_local_vae_and_cache(tmp_path):
    from tests.test_data import tiny_vae_dir

    vae = tiny_vae_dir(tmp_path / "vae")
    extra = ["--latent", str(vae), "--latent-cache", str(tmp_path / "lat.npy")]
    assert main(args(tmp_path / "run", *extra, steps=2)) == 0
    derived = RunDir(tmp_path / "run").read_config()["derived"]
    assert (derived["in_channels"], derived["input_size"]) == (4, 16)
    assert (tmp_path / "lat.npy").exists()
    from usm.sample import main as sample_main

    assert sample_main([str(tmp_path / "run"), "--num", "2", "--steps", "2", "--out", str(tmp_path / "s")]) == 0
    assert np.load(tmp_path / "s" / "samples.npz")["images"].shape == (2, 32, 32, 3)  # decoded by the VAE


def run_cli(run_dir, steps, extra=(), timeout=300):
    cmd = [sys.executable, "-m", "usm.train", *args(run_dir, *extra, model="USM-T/2", steps=steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_sigkill_at_arbitrary_moments_then_resume_is_bitwise_identical(tmp_path):
    steps = 120
    started = time.monotonic()
    reference = run_cli(tmp_path / "whole", steps)
    whole = time.monotonic() - started  # kills are drawn within it, so they land mid-run on any machine
    assert reference.returncode == 0, reference.stderr[-2000:]
    rng = random.Random(0)
    cmd = [sys.executable, "-m", "usm.train", *args(tmp_path / "killed", model="USM-T/2", steps=steps)]
    log = tmp_path / "killed" / "log.txt"

    def resumes():
        return log.read_text().count("resumed from") if log.exists() else 0

    kills = 0
    for _ in range(30):  # kill at random moments until kills have landed mid-run (bounded, however slow)
        if kills >= 3 and resumes() >= 2:
            break
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "2"})
        try:
            proc.wait(timeout=rng.uniform(0.15, 0.6) * whole)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0
        if kills >= 2:
            break
        shutil.rmtree(tmp_path / "killed")  # it outran the kills (a machine that sped up): start over
        kills = 0
    finish = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert finish.returncode == 0, finish.stderr[-2000:]  # then to the end, without kills (a no-op if done)
    assert kills >= 2, "the kills must land mid-run for this test to mean anything"
    assert resumes() >= 2
    final = latest_checkpoint(RunDir(tmp_path / "killed").checkpoints)
    assert final[0] == steps
    for part in ("model", "ema"):
        assert_same_weights(weights(tmp_path / "whole", part), final[1][part])


@pytest.mark.slow
def test_ranks_that_disagree_on_a_non_finite_loss_stop_together(tmp_path):
    """Rank 1 alone sees a NaN loss at its fifth step: both ranks must stop there, with one message
    and the step-3 checkpoint kept, instead of rank 0 training on into a collective rank 1 left."""
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(
        "import os, sys\n"
        "import usm.training.loop as loop\n"
        "from usm.rectified_flow import training_loss\n"
        "calls = []\n"
        "def flaky(*a, **k):\n"
        "    calls.append(1)\n"
        "    loss = training_loss(*a, **k)\n"
        "    return loss * float('nan') if os.environ['RANK'] == '1' and len(calls) == 5 else loss\n"
        "loop.training_loss = flaky\n"
        "from usm.train import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(29600 + os.getpid() % 1000), str(script),
           *args(tmp_path / "ddp", model="DiT-T/2", steps=10)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0  # diverged (torchrun reports the ranks' exit code 3 as a failure)
    message = "non-finite loss or weights at step 4 (on at least one rank)"
    assert done.stderr.count(message) == 2, done.stderr[-3000:]  # each rank stopped at the same step
    assert (tmp_path / "ddp" / "log.txt").read_text().count(message) == 1
    assert latest_checkpoint(RunDir(tmp_path / "ddp").checkpoints)[0] == 3
    assert "RuntimeError" not in done.stderr, done.stderr[-3000:]  # no rank left in a broken collective


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "usm.train", *args(tmp_path / "ddp", model="ZigMa-T/2", steps=4)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    step, state, _ = latest_checkpoint(RunDir(tmp_path / "ddp").checkpoints)
    assert step == 4 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # per-rank seeds differ
    assert RunDir(tmp_path / "ddp").read_stats()[-1]["images_seen"] == 4 * 4 * 2


@pytest.mark.parametrize("name, model_args, cond", [
    ("USM-T/1", {}, None), ("USM-T/1", {"num_classes": 4}, "class"),
    ("USM-T/1", {"has_text": True, "d_context": 16}, "text"), ("ZigMa-T/2", {"num_classes": 4}, "class"),
    ("ZigMa-T/2", {"has_text": True, "d_context": 16}, "text"), ("DiT-T/2", {"num_classes": 4}, "class"),
    ("UNet-T", {}, None)])
def test_every_trainable_parameter_gets_a_gradient_so_ddp_need_not_search(name, model_args, cond):
    """The trainer asks DDP for no per-step search for unused parameters (find_unused_parameters)
    unless a model sets ``leaves_parameters_unused``: each trainable parameter of every family, in
    each conditioning mode, takes part in a training step, classifier-free dropout included."""
    from usm.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(name, **model_args)
    assert not getattr(model, "leaves_parameters_unused", False)
    side, channels = model.config["input_size"], model.config["in_channels"]
    labels = {None: None, "class": torch.tensor([0, 1, 2, 3]), "text": torch.randn(4, 5, 16)}[cond]
    for k in range(2):  # the second draw drops other samples' conditions
        model.zero_grad(set_to_none=True)
        training_loss(model, torch.randn(4, channels, side, side), labels, "logit_normal",
                      generator(0, "t", k)).backward()
        assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_tf32_is_turned_on_for_cuda_devices_only():
    from usm.precision import use_tf32

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        assert use_tf32("cpu") is False and not torch.backends.cuda.matmul.allow_tf32
        assert use_tf32(torch.device("cuda", 1)) is True
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_a_resumed_optimizer_is_fused_with_its_step_counts_beside_the_weights(tmp_path, monkeypatch):
    """AdamW's unfused path keeps each ``step`` count on the CPU and syncs the host on every one of
    them when a resume (or accelerate's prepare) has moved them to the GPU; the fused one keeps
    them on the weights' device by design. The trainer builds it fused, and so it stays on resume."""
    assert main(args(tmp_path / "run", steps=3)) == 0
    seen = {}
    original = loop.run_steps

    def spy(s, step, ema, optimizer, scheduler):
        seen["fused"] = optimizer.defaults["fused"]
        seen["devices"] = {state["step"].device for state in optimizer.state.values()}
        seen["params"] = {p.device for group in optimizer.param_groups for p in group["params"]}
        return original(s, step, ema, optimizer, scheduler)

    monkeypatch.setattr(loop, "run_steps", spy)
    assert main(args(tmp_path / "run", steps=5)) == 0
    assert seen["fused"] is True and seen["devices"] == seen["params"]
