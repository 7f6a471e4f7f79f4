"""Collection that needs only the core: a test file or module (doctests included) that cannot be
imported because an optional package is missing is skipped, naming the package, not an error.

A GPU node without network has torch, triton and numpy but may lack what only some tools need
(submitit for the launcher, diffusers for the U-Net control, fvcore for FLOP counts,
torch-fidelity for FID, nbformat for the notebook test): ``pytest -m cuda`` must still collect there.
"""

import re

import pytest

# import name -> what to install; the core (torch, numpy, accelerate, ...) is not here: without it
# nothing runs, and its absence must stay an error
OPTIONAL = {"submitit": "submitit", "diffusers": "diffusers", "fvcore": "fvcore", "iopath": "iopath",
            "yacs": "yacs", "termcolor": "termcolor", "torch_fidelity": "torch-fidelity", "nbformat": "nbformat",
            "nbclient": "nbclient", "calflops": "calflops", "mambapy": "mambapy", "importlib_metadata":
            "importlib_metadata", "tensorboard": "tensorboard", "transformers": "transformers"}
MISSING = re.compile(r"ModuleNotFoundError: No module named '([A-Za-z0-9_]+)")


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    if report.failed:
        found = MISSING.search(str(report.longrepr))
        if found and found.group(1) in OPTIONAL:
            report.outcome = "skipped"
            report.longrepr = (str(collector.path), 0, f"Skipped: needs the optional package "
                                                       f"{OPTIONAL[found.group(1)]} (not installed)")
    return report
