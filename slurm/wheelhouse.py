"""An offline install for GPU nodes without network: the wheels a node lacks, fetched where there is
network, installed there with no index and without touching its torch, triton or numpy.

    python slurm/wheelhouse.py build wheelhouse --python 3.12          # here (PyPI reachable)
    python slurm/wheelhouse.py install wheelhouse                      # on the node, from the repository

``build`` walks the project's requirements (``pyproject.toml``) and theirs, for the node's Python and
platform, leaving out every package the node already has (``--have``; the default is what the GPU
images of this project's device machines carry, docs/gpu.md). Each remaining package is downloaded as
a wheel for that Python (an sdist-only one, such as fvcore, is built into a pure-Python wheel here), and
the project itself is built into a wheel too. ``manifest.json`` lists the set and why each is in it.

``install`` runs ``pip install --no-index --no-deps`` on exactly those wheels (so pip can neither reach
the network nor replace an installed package), removes the top-level ``tests`` package that
torch-fidelity's wheel carries (it would shadow the repository's), and imports every module the GPU
check needs, one line each; it exits 1 if any import fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the lent GPU machines' image has (its Python 3.12 site-packages): never fetched, never replaced.
IMAGE_HAS = ("torch", "triton", "numpy", "accelerate", "numba", "llvmlite", "pandas", "matplotlib", "scipy",
             "scikit-learn", "tabulate", "tqdm", "tensorboard", "pillow", "transformers", "huggingface-hub",
             "safetensors", "pytest", "packaging", "pyyaml", "filelock", "typing-extensions", "jinja2", "sympy",
             "networkx", "fsspec", "requests", "psutil", "setuptools", "regex", "joblib", "threadpoolctl",
             "python-dateutil", "pytz", "tzdata", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing",
             "six", "markupsafe", "mpmath", "certifi", "charset-normalizer", "idna", "urllib3", "tokenizers",
             "cloudpickle", "nvidia-*", "cuda-*")
# The modules the GPU check imports beyond the core: each must import after an install.
CHECKED_IMPORTS = ("usm", "baselines", "analysis", "experiments", "submitit", "diffusers", "fvcore", "iopath",
                   "torch_fidelity", "analysis.bench.gpu_check", "experiments.point")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def target_environment(python: str, platform: str) -> dict:
    """The marker environment of the node (packaging.markers), for requirements' ``; python_version...``."""
    major, minor = python.split(".")[:2]
    return {"python_version": f"{major}.{minor}", "python_full_version": f"{major}.{minor}.0",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": "aarch64" if "aarch64" in platform else "x86_64",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(meta).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def fetch(requirement: str, out: Path, python: str, platform: str) -> Path:
    """One wheel for the node (no dependencies): a binary one for its Python and platform, else the
    sdist built into a wheel here (pure-Python packages only)."""
    before = set(out.glob("*.whl"))
    binary = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--python-version", python, "--platform", platform, "--platform", "any", "--implementation", "cp",
              "-d", str(out), requirement]
    if subprocess.run(binary, capture_output=True, text=True).returncode != 0:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
                            "-d", tmp, requirement], check=True, capture_output=True, text=True)
            sdist = next(Path(tmp).iterdir())
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(sdist)],
                           check=True, capture_output=True, text=True)
    new = set(out.glob("*.whl")) - before
    if not new:  # already there from an earlier requirement
        name = canonical(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        new = {w for w in out.glob("*.whl") if canonical(w.name.split("-")[0]) == name}
    return sorted(new)[0]


def torchvision_for(torch: str) -> str:
    """The torchvision release built against torch ``torch`` (2.x -> 0.(x + 15): 2.11 -> 0.26)."""
    major, minor = (int(part) for part in torch.split(".")[:2])
    if major != 2:
        raise SystemExit(f"error: --torch {torch}: only torch 2.x is paired with a torchvision here")
    return f"0.{minor + 15}"


def check_torch_pin(wheel: Path, torch: str) -> None:
    """SystemExit when a wheel requires a torch the node does not have (it would fail to import there)."""
    from packaging.requirements import Requirement

    for text in wheel_requirements(wheel):
        requirement = Requirement(text)
        if requirement.name == "torch" and requirement.marker is None \
                and not requirement.specifier.contains(f"{torch}.0" if torch.count(".") == 1 else torch):
            raise SystemExit(f"error: {wheel.name} needs torch {requirement.specifier}, the node has {torch}")


def build(out: Path, python: str, platform: str, have: list[str], torch: str = "2.11", log=print) -> dict:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out.mkdir(parents=True, exist_ok=True)
    environment = {**default_environment(), **target_environment(python, platform)}
    had = [canonical(h) for h in have]
    skip = lambda name: any(re.fullmatch(h.replace("*", ".*"), name) for h in had)  # noqa: E731
    queue = [(r, "usm-bench") for r in project_requirements()]
    wanted, seen = {}, set()
    while queue:
        text, why = queue.pop(0)
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        if name in seen or skip(name):
            continue
        seen.add(name)
        wanted_text = str(requirement).split(";")[0]
        if name == "torchvision":  # built against one torch release: the node's, not the newest
            wanted_text = f"torchvision=={torchvision_for(torch)}.*"
        wheel = fetch(wanted_text, out, python, platform)
        check_torch_pin(wheel, torch)
        wanted[wheel.name] = why
        log(f"{wheel.name}  (for {why})")
        queue += [(r, name) for r in wheel_requirements(wheel)]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(out), str(ROOT)], check=True, capture_output=True, text=True)
    project = next(out.glob("usm_bench-*.whl"))
    wanted[project.name] = "the project"
    manifest = {"python": python, "platform": platform, "torch": torch, "have": list(have), "wheels": wanted}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def install(folder: Path, log=print) -> int:
    manifest = json.loads((folder / "manifest.json").read_text())
    wheels = [str(folder / name) for name in manifest["wheels"]]
    # --force-reinstall: the manifest's versions even where an older copy is visible (a venv over the
    # system's packages); --no-deps: nothing beyond them, so the node's torch, triton, numpy stay as they are
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--force-reinstall",
                    *wheels], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    for record in purelib.glob("torch_fidelity-*.dist-info/RECORD"):  # its own test package, at the top level
        if any(line.startswith("tests/") for line in record.read_text().splitlines()):
            shutil.rmtree(purelib / "tests", ignore_errors=True)
            log(f"removed {purelib / 'tests'} (torch-fidelity's tests, installed at the top level)")
    failed = 0
    for module in CHECKED_IMPORTS:
        try:
            importlib.import_module(module)
            log(f"ok      {module}")
        except Exception as exc:  # noqa: BLE001 - report every module, then fail
            failed += 1
            log(f"FAILED  {module}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python slurm/wheelhouse.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="fetch the wheels a node lacks (needs network)")
    make.add_argument("out", type=Path)
    make.add_argument("--python", default="3.12", help="the node's Python (default 3.12, the GPU images')")
    make.add_argument("--platform", default="manylinux_2_28_x86_64", help="the node's wheel platform tag")
    make.add_argument("--torch", default="2.11", help="the node's torch release (default 2.11, the GPU images'): "
                                                      "torchvision is fetched for it")
    make.add_argument("--have", nargs="+", action="extend", default=None,
                      help="packages the node has, never fetched (default: the GPU image's list; * globs)")
    put = commands.add_parser("install", help="install a wheelhouse here, without network")
    put.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "build":
        manifest = build(args.out, args.python, args.platform, args.have or list(IMAGE_HAS), args.torch)
        print(f"{len(manifest['wheels'])} wheels in {args.out} (manifest.json); on the node: "
              f"python slurm/wheelhouse.py install {args.out}")
        return 0
    if not (args.folder / "manifest.json").exists():
        print(f"error: {args.folder} holds no manifest.json: build it with python slurm/wheelhouse.py build "
              f"{args.folder} where there is network", file=sys.stderr)
        return 2
    return install(args.folder)


if __name__ == "__main__":
    sys.exit(main())
