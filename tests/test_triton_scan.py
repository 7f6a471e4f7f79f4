"""The Triton scan (forward and backward) on the CPU, through Triton's interpreter, in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from usm.ssm.triton_gpu import available

SCRIPT = Path(__file__).with_name("triton_parity.py")
pytestmark = pytest.mark.skipif(not available()[0], reason=f"triton does not import: {available()[1]}")


def run_parity(*extra):
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *extra], capture_output=True, text=True, env=env,
                          timeout=900)


@pytest.mark.slow
def test_triton_matches_reference_under_the_interpreter():
    result = run_parity()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all Triton parity checks passed" in result.stdout


def test_a_planted_sign_error_in_the_backward_kernel_fails_the_checks():
    result = run_parity("--plant")
    assert result.returncode != 0 and "gradient of A" in result.stdout + result.stderr
