"""The offline install: built where PyPI answers, installed in a venv whose pip has no index, with
the packages a GPU image lacks hidden from it, and then the CUDA tests collect there."""

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "slurm"))
import wheelhouse  # noqa: E402

# importable from this machine's site-packages but not the image's: the venv may see them only if its
# own install put them there
HIDDEN = ("submitit", "diffusers", "fvcore", "iopath", "yacs", "termcolor", "torch_fidelity", "portalocker",
          "importlib_metadata", "nbformat", "nbclient", "usm_bench")
BLOCKER = f"""
import importlib.abc, importlib.machinery, sys, sysconfig
OWN = sysconfig.get_paths()["purelib"]
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {HIDDEN!r} and path is None:
            spec = importlib.machinery.PathFinder.find_spec(name, [OWN])
            if spec is None:
                raise ModuleNotFoundError(f"No module named '{{name}}'", name=name)
            return spec
sys.meta_path.insert(0, Hide())
"""


def test_torchvision_is_paired_with_the_nodes_torch():
    assert wheelhouse.torchvision_for("2.11") == "0.26" and wheelhouse.torchvision_for("2.14.1") == "0.29"
    assert wheelhouse.target_environment("3.12", "manylinux_2_28_x86_64")["python_version"] == "3.12"


@pytest.mark.slow
def test_a_wheelhouse_installs_without_network_and_the_cuda_tests_collect(tmp_path):
    house = tmp_path / "wheelhouse"
    version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    have = [h for h in wheelhouse.IMAGE_HAS]
    assert wheelhouse.main(["build", str(house), "--python", python, "--torch", version, "--have", *have]) == 0
    manifest = json.loads((house / "manifest.json").read_text())
    names = {name.split("-")[0].lower() for name in manifest["wheels"]}
    assert {"submitit", "diffusers", "fvcore", "torch_fidelity", "usm_bench"} <= names
    assert not names & {"torch", "triton", "numpy"}  # never fetched, never replaced
    env_dir = tmp_path / "node"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    python_bin = env_dir / "bin" / "python"
    purelib = subprocess.run([python_bin, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "sitecustomize.py").write_text(BLOCKER)
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    hidden = subprocess.run([python_bin, "-c", "import submitit"], env=env, capture_output=True, text=True)
    assert hidden.returncode != 0  # the blocker works: the node lacks it before the install
    done = subprocess.run([python_bin, str(ROOT / "slurm" / "wheelhouse.py"), "install", str(house)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok      submitit" in done.stdout and "FAILED" not in done.stdout
    collected = subprocess.run([python_bin, "-m", "pytest", "-m", "cuda", "--collect-only", "-q", "-p",
                                "no:cacheprovider"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "test_cuda_backends_match_reference" in collected.stdout and "error" not in collected.stdout.lower()
