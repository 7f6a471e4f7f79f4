"""The Triton scan against the reference, run under Triton's CPU interpreter (tests/test_triton_scan.py).

    TRITON_INTERPRET=1 python tests/triton_parity.py [--plant]

TRITON_INTERPRET is read when the kernels are defined, so this runs in its own process. ``--plant``
flips the sign of dA's accumulation in a copy of the backward kernel: the checks must then fail.
"""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_ssm import ATOL, GRAD_TOL, RTOL, assert_close_grads, make_inputs, run_with_grads  # noqa: E402

import usm.ssm.triton_gpu as triton_gpu  # noqa: E402
from usm.ssm.reference import selective_scan_reference  # noqa: E402

# (form of B, form of C, length, D, z and delta_bias, softplus): every form, mixed forms, lengths
# around the checkpoint interval (32), with and without the optional inputs.
CASES = [
    ("variable", "variable", 1, True, True),
    ("variable", "variable", 37, True, True),
    ("variable", "variable", 70, False, False),
    ("grouped", "grouped", 33, True, True),
    ("grouped", "grouped", 5, False, True),
    ("fixed", "fixed", 9, True, True),
    ("variable", "fixed", 12, True, False),
    ("grouped", "variable", 7, True, True),
]


def plant_error() -> None:
    """Load a copy of the kernels with a sign error in the backward's dA, and use it."""
    source = Path(triton_gpu.__file__).with_name("_triton_kernels.py").read_text()
    planted = source.replace("acc_A += g_decay * dt[:, None]", "acc_A -= g_decay * dt[:, None]")
    assert planted != source, "the line to plant the error in has changed"
    path = Path(tempfile.mkdtemp()) / "planted_kernels.py"
    path.write_text(planted)
    spec = importlib.util.spec_from_file_location("planted_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    triton_gpu._kernels = lambda: module


def check(b_form, c_form, length, optional, softplus, dtype=torch.float32, channels=None):
    if channels is None:
        channels = 4 if "fixed" in (b_form, c_form) else 8  # the fixed form runs one channel per program
    inputs = make_inputs(2, channels, length, 4, b_form, with_d=optional, with_z=optional, with_bias=optional,
                         dtype=dtype)
    if c_form != b_form:
        inputs["C"] = make_inputs(2, channels, length, 4, c_form, seed=1)["C"].to(dtype)
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs, softplus=softplus)
    y, last, g = run_with_grads(triton_gpu.selective_scan_triton, inputs, softplus=softplus)
    rtol, atol, gtol = (RTOL, ATOL, GRAD_TOL) if dtype == torch.float32 else (3e-2, 5e-2, 3e-2)
    assert y.dtype == dtype and all(g[k].dtype == inputs[k].dtype for k in g)
    assert last.dtype == torch.float32 and y.is_contiguous() and last.is_contiguous()  # mamba_ssm's contract
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=rtol, atol=atol)
    torch.testing.assert_close(last.float(), last_ref.float(), rtol=rtol, atol=atol)
    assert_close_grads({k: v.float() for k, v in g_ref.items()}, {k: v.float() for k, v in g.items()}, gtol)


def main() -> int:
    assert triton_gpu.interpreted(), "run with TRITON_INTERPRET=1"
    if "--plant" in sys.argv:
        plant_error()
    for b_form, c_form, length, optional, softplus in CASES:
        check(b_form, c_form, length, optional, softplus)
        print(f"ok  B {b_form}, C {c_form}, L={length}, optional inputs {optional}, softplus {softplus}")
    check("variable", "variable", 9, True, True, dtype=torch.bfloat16)
    print("ok  bf16 inputs")
    # a launch asked for more programs than 64-channel blocks give: blocks of 16 (two per group)
    triton_gpu.target_programs = lambda device: 8
    assert triton_gpu._block_d(32, 2, 64, 8) == 16
    check("grouped", "grouped", 20, True, True, channels=64)
    print("ok  smaller channel blocks for more programs")
    plain = {k: v.detach() for k, v in make_inputs(1, 8, 6, 4, "variable").items()}
    out = triton_gpu.selective_scan_triton(**plain)  # without return_last_state
    torch.testing.assert_close(out, selective_scan_reference(**plain), rtol=RTOL, atol=ATOL)
    print("all Triton parity checks passed")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.exit(main())
