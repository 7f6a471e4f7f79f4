"""Renamed spellings (``skip_gate`` -> ``z_gate``, timesteps ``log`` -> ``logit_normal``, ``--set model.ARG``
-> ``model_args.ARG``): the old ones
work for one release with a warning, and what was stored under them still resumes."""

import json

import pytest

from experiments.grids import GRIDS
from experiments.point import check_same_point
from usm.models.registry import build_model
from usm.training.config import parse_args
from usm.training.run_dir import identity_differences


def test_the_old_model_argument_builds_the_same_model_with_a_warning():
    with pytest.warns(FutureWarning, match="skip_gate=True is now spelled z_gate=False"):
        old = build_model("USM-T/2", skip_gate="true")
    assert old.config["z_gate"] is False and "skip_gate" not in old.config
    assert all(not block.mixer.z_gate for block in old.blocks)
    assert build_model("USM-T/2").config["z_gate"] is True  # the gate stays on by default


def test_the_old_timestep_name_parses_as_logit_normal(tmp_path):
    with pytest.warns(FutureWarning, match="timesteps 'log' is now spelled 'logit_normal'"):
        cfg = parse_args(["--run-dir", str(tmp_path), "--timesteps", "log"])
    assert cfg.train.timesteps == "logit_normal"
    assert parse_args(["--run-dir", str(tmp_path)]).train.timesteps == "logit_normal"


def test_a_studys_old_set_spellings_make_the_same_points_with_a_warning():
    new = GRIDS["ablations"].points("smoke", sets={"model_args.expand": 2, "num_samples": 96})
    with pytest.warns(FutureWarning) as caught:
        old = GRIDS["ablations"].points("smoke", sets={"model.expand": 2, "settings.num_samples": 96})
    assert [str(w.message).split(";")[0] for w in caught] == [
        "--set model.expand is now spelled model_args.expand", "--set settings.num_samples is now spelled num_samples"]
    assert [p.to_dict() for p in old] == [p.to_dict() for p in new]
    assert {p.settings.model_args["expand"] for p in new} == {2} and {p.settings.num_samples for p in new} == {96}


def test_a_point_and_a_run_stored_under_the_old_names_are_the_same_point(tmp_path):
    point = GRIDS["ablations"].points("smoke", seeds=[0])[0].to_dict()
    assert point["axes"]["z_gate"] is True and point["settings"]["train"]["timesteps"] == "logit_normal"
    old = _old_spelling(point)
    (tmp_path / "point.json").write_text(json.dumps(old))
    check_same_point(tmp_path, point)  # resumes, no PointMismatch
    identity = {"train": {"timesteps": "log"}, "model": {"model": "USM-T/1", "model_args": {"skip_gate": False}}}
    asked = {"train": {"timesteps": "logit_normal"}, "model": {"model": "USM-T/1", "model_args": {"z_gate": True}}}
    assert identity_differences(identity, asked) == []
    asked["model"]["model_args"]["z_gate"] = False
    assert identity_differences(identity, asked) == [
        "model.model_args: {'z_gate': True} here, {'z_gate': False} requested"]


def _old_spelling(point: dict) -> dict:
    old = json.loads(json.dumps(point))
    old["arm"] = old["arm"].replace("z_gate=False", "skip_gate=True")
    old["axes"]["skip_gate"] = not old["axes"].pop("z_gate")
    old["axes"]["timesteps"] = old["settings"]["train"]["timesteps"] = "log"
    old["settings"]["model_args"]["skip_gate"] = not old["settings"]["model_args"].pop("z_gate")
    old["settings"]["metric"] = "swd"
    old["settings"]["image_sizes"] = []  # every point stored it while profile-only points were grids
    return old


def test_a_launch_renames_a_study_folder_of_the_old_arm_and_resumes_it(tmp_path):
    from experiments.launch import migrate_study, statuses, study_points

    points = study_points("ablations", "smoke", seeds=[0])
    new = next(p for p in points if p["arm"] == "z_gate=False")
    study = tmp_path / "ablations"
    old_dir = study / "skip_gate=True-s0"
    (old_dir / "metrics").mkdir(parents=True)
    (old_dir / "point.json").write_text(json.dumps(_old_spelling(new)))
    (old_dir / "metrics" / "quality.json").write_text('{"shape_coverage": 0.5}')
    (old_dir / "done").touch()
    (study / "recipe-s0").mkdir()  # a point already under its new name: untouched
    (study / "recipe-s0" / "point.json").write_text(json.dumps(points[0]))
    lines = []
    assert migrate_study(study, lines.append) == ["z_gate=False-s0"]
    assert lines == ["renamed skip_gate=True-s0 -> z_gate=False-s0 (the arm's new spelling)"]
    assert not old_dir.exists()
    stored = json.loads((study / "z_gate=False-s0" / "point.json").read_text())
    assert stored["arm"] == "z_gate=False" and stored["settings"]["metric"] == "pixel"
    status = {p["name"]: s for p, s, _ in statuses(str(tmp_path), points)}
    assert status["z_gate=False-s0"] == "done"  # resumed as done, not trained again
    assert migrate_study(study, lines.append) == []  # a second launch has nothing to rename


def test_a_rename_interrupted_before_its_point_json_was_rewritten_is_the_same_point(tmp_path):
    """migrate_study renames the folder first: one killed before it rewrote point.json leaves the new
    folder holding the old spelling, which is neither a stray copy nor another point."""
    from analysis.report.collect import stray
    from experiments.launch import check_existing, migrate_study, study_points

    points = study_points("ablations", "smoke", seeds=[0])
    new = next(p for p in points if p["arm"] == "z_gate=False")
    folder = tmp_path / "ablations" / "z_gate=False-s0"
    folder.mkdir(parents=True)
    (folder / "point.json").write_text(json.dumps(_old_spelling(new)))
    assert not stray(folder)
    check_existing(str(tmp_path), points)  # no PointMismatch
    lines = []
    assert migrate_study(tmp_path / "ablations", lines.append) == []  # the next launch finishes it
    assert lines == ["rewrote z_gate=False-s0/point.json in the arm's new spelling"]
    assert json.loads((folder / "point.json").read_text())["arm"] == "z_gate=False"
    (tmp_path / "ablations" / "recipe-s9").mkdir()
    (tmp_path / "ablations" / "recipe-s9" / "point.json").write_text(json.dumps(_old_spelling(new)))
    assert stray(tmp_path / "ablations" / "recipe-s9", warn=False)  # a copy under another point's name
