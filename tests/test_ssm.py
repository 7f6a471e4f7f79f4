"""Selective scan: every backend against the per-step reference (outputs and all gradients)."""

import warnings
from pathlib import Path

import pytest
import torch

from usm.ssm import BACKENDS, last_backend, resolve_backend, selective_scan
from usm.ssm.numba_cpu import selective_scan_numba
from usm.ssm.reference import selective_scan_reference
from usm.ssm.torch_chunked import selective_scan_torch

# mamba_ssm's own fp32 parity tolerances (docs/scan.md).
RTOL, ATOL, GRAD_TOL = 6e-4, 2e-3, 1e-3


def make_inputs(batch, channels, length, state, form, groups=2, with_d=True, with_z=True, with_bias=True,
                dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    bc_shape = {"variable": (batch, state, length), "grouped": (batch, groups, state, length),
                "fixed": (channels, state)}[form]
    inputs = dict(
        u=randn(batch, channels, length),
        delta=randn(batch, channels, length, scale=0.5),
        A=-torch.rand(channels, state, generator=gen).to(device) * 2 - 0.1,
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(channels) if with_d else None,
        z=randn(batch, channels, length) if with_z else None,
        delta_bias=randn(channels, scale=0.1) if with_bias else None,
    )
    return {k: None if v is None else v.requires_grad_() for k, v in inputs.items()}


def run_with_grads(fn, inputs, softplus=True, **kwargs):
    y, last = fn(**inputs, delta_softplus=softplus, return_last_state=True, **kwargs)
    gen = torch.Generator().manual_seed(123)
    gy = torch.randn(y.shape, generator=gen).to(y)
    glast = torch.randn(last.shape, generator=gen).to(last)
    names = [k for k, v in inputs.items() if v is not None]
    grads = torch.autograd.grad((y * gy).sum() + (last * glast).sum(), [inputs[k] for k in names])
    return y, last, dict(zip(names, grads))


def assert_close_grads(expected, actual, tol):
    for name in expected:
        scale = expected[name].abs().max().clamp_min(1.0)
        torch.testing.assert_close(actual[name] / scale, expected[name] / scale, rtol=tol, atol=tol,
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")


# Each backend at the lengths that matter to it: the torch backend around its chunk sizes (given
# here, 1 and 3, or its default), numba around its checkpoint interval (16: 15, 16, 17 and 33 cross
# 0, 1 and 2 saved states). One test, the same tolerances, so the backends are held to one bar.
PARITY = ([("torch", length, {"chunk": chunk}) for length in (1, 2, 7, 33) for chunk in (None, 1, 3)]
          + [("numba", length, {}) for length in (1, 7, 15, 16, 17, 33)])


@pytest.mark.parametrize("form", ["variable", "grouped", "fixed"])
@pytest.mark.parametrize("optional", [True, False], ids=["D-z-bias", "bare"])
@pytest.mark.parametrize("backend, length, options", PARITY,
                         ids=[f"{b}-L{n}" + "".join(f"-{k}{v}" for k, v in o.items()) for b, n, o in PARITY])
def test_cpu_backends_match_reference(backend, length, options, form, optional):
    inputs = make_inputs(2, 6, length, 4, form, with_d=optional, with_z=optional, with_bias=optional)
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs, softplus=optional)
    y, last, g = run_with_grads(BACKENDS[backend], inputs, softplus=optional, **options)
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(last, last_ref, rtol=RTOL, atol=ATOL)
    assert_close_grads(g_ref, g, GRAD_TOL)


def test_torch_backend_chunks_are_sized_for_launches_on_cuda_and_for_caches_on_the_cpu():
    """At (8, 1536, 1024, 16) the CPU budget gives chunks of 5 positions: on a GPU that is about
    three kernel launches a position where the recurrence needs one; there the chunks are 85."""
    from usm.ssm.inputs import check_inputs
    from usm.ssm.torch_chunked import chunk_length

    u = torch.empty(8, 1536, 1024, device="meta")
    A, B = torch.empty(1536, 16, device="meta"), torch.empty(8, 16, 1024, device="meta")
    shape = check_inputs(u, u, A, B, B, None, None, None)
    assert chunk_length(shape, torch.device("cpu")) == 5
    assert chunk_length(shape, torch.device("cuda", 1)) == 85
    assert chunk_length(check_inputs(u[:, :, :40], u[:, :, :40], A, B[..., :40], B[..., :40], None, None, None),
                        torch.device("cuda")) == 40  # never longer than the sequence


# The kernels loop over the N states (one 16-lane vector of channels each): any N works.
@pytest.mark.parametrize("state", [1, 8, 12, 16, 20])
@pytest.mark.parametrize("form", ["variable", "grouped"])
def test_numba_matches_reference_for_any_number_of_states(state, form):
    inputs = make_inputs(2, 4, 37, state, form)
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs)
    y, last, g = run_with_grads(selective_scan_numba, inputs)
    assert last.shape == last_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(last, last_ref, rtol=RTOL, atol=ATOL)
    assert_close_grads(g_ref, g, GRAD_TOL)


@pytest.mark.parametrize("b_form, c_form", [("grouped", "variable"), ("variable", "fixed"), ("fixed", "grouped")])
def test_numba_mixed_b_and_c_forms(b_form, c_form):
    b_inputs, c_inputs = make_inputs(2, 6, 9, 4, b_form, seed=1), make_inputs(2, 6, 9, 4, c_form, seed=2)
    inputs = dict(b_inputs, C=c_inputs["C"])
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs)
    y, last, g = run_with_grads(selective_scan_numba, inputs)
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    assert_close_grads(g_ref, g, GRAD_TOL)


# Work items are blocks of 16 channels. 40 channels: two whole blocks and a padded one (dB and dC summed
# over three items); grouped with 2 groups of 16 (each block inside a group: the shared form) and of 24
# (blocks straddle groups: B and C expanded to one value per channel).
@pytest.mark.parametrize("channels, form, groups", [(40, "variable", 1), (40, "fixed", 1), (32, "grouped", 2),
                                                    (48, "grouped", 2)])
def test_numba_matches_reference_across_channel_blocks(channels, form, groups):
    inputs = make_inputs(2, channels, 21, 4, form, groups=groups)
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs)
    y, last, g = run_with_grads(selective_scan_numba, inputs)
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(last, last_ref, rtol=RTOL, atol=ATOL)
    assert_close_grads(g_ref, g, GRAD_TOL)


@pytest.mark.slow
def test_numba_results_do_not_depend_on_the_thread_count():
    """Items run on any thread and every shared sum goes through per-item buffers: one thread and two
    give the same bits."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "torch.set_num_threads(int(sys.argv[1]))\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from test_ssm import make_inputs, run_with_grads\n"
            "from usm.ssm.numba_cpu import selective_scan_numba\n"
            "y, last, g = run_with_grads(selective_scan_numba, make_inputs(3, 48, 40, 16, 'variable'))\n"
            "print(float(sum(t.double().abs().sum() * (i + 1) for i, t in enumerate([y, last, *g.values()]))))")
    runs = [subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True, timeout=300)
            for n in (1, 2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    assert runs[0].stdout == runs[1].stdout


@pytest.mark.parametrize("fn", [selective_scan_torch, selective_scan_numba], ids=["torch", "numba"])
def test_fast_backends_match_reference_without_last_state_and_in_bf16(fn):
    inputs = make_inputs(1, 8, 9, 4, "variable", dtype=torch.bfloat16)
    y_ref = selective_scan_reference(**inputs, delta_softplus=True)
    y = fn(**inputs, delta_softplus=True)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=3e-2, atol=5e-2)
    y.float().sum().backward()
    assert inputs["u"].grad.dtype == torch.bfloat16 and inputs["B"].grad.dtype == torch.bfloat16


@pytest.mark.parametrize("backend", ["reference", "torch", "numba"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_every_backend_keeps_mamba_ssms_contract(backend, dtype):
    """What mamba_ssm's kernel returns: the output in u's dtype, contiguous, (batch, D, L); the last
    state in float32 (rounding it to bf16 would cost 0.1 of accuracy), (batch, D, N), contiguous.
    The Triton backend is held to the same in tests/triton_parity.py."""
    inputs = {k: None if v is None else v.detach() for k, v in make_inputs(2, 4, 9, 3, "variable", dtype=dtype).items()}
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend=backend)
    assert out.dtype == dtype and out.shape == (2, 4, 9) and out.is_contiguous()
    assert last.dtype == torch.float32 and last.shape == (2, 4, 3) and last.is_contiguous()


def test_torch_backend_works_in_float32_under_autocast():
    inputs = make_inputs(2, 8, 20, 4, "variable")
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, last, g = run_with_grads(selective_scan_torch, inputs)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)  # bf16 einsums miss this by far
    assert_close_grads(g_ref, g, GRAD_TOL)


def test_grouped_with_one_group_equals_variable():
    inputs = make_inputs(2, 6, 5, 4, "variable")
    grouped = dict(inputs, B=inputs["B"][:, None], C=inputs["C"][:, None])
    torch.testing.assert_close(selective_scan(**grouped, backend="torch"), selective_scan(**inputs, backend="torch"))


def test_reference_backward_is_linear_in_length():
    """The reference must stay usable for training: its graph grows with L, not L^2."""
    import time

    def seconds(length):
        inputs = make_inputs(1, 4, length, 2, "variable", with_z=False)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            selective_scan_reference(**inputs).sum().backward()
            best = min(best, time.perf_counter() - start)
        return best

    seconds(8)
    ratio = seconds(512) / seconds(128)
    assert ratio < 8, f"4x longer sequence took {ratio:.1f}x the time (quadratic would be ~16x)"


def test_known_values_single_channel():
    """Closed form for constant inputs: h_t = sum_{s<=t} a^(t-s) * dt*u*b."""
    length, a_log, dt, b, c = 5, -0.5, 0.3, 2.0, 1.5
    u = torch.ones(1, 1, length)
    out = selective_scan(u, torch.full_like(u, dt), torch.tensor([[a_log]]), torch.full((1, 1, length), b),
                         torch.full((1, 1, length), c), backend="torch")
    decay = torch.exp(torch.tensor(dt * a_log))
    expected = torch.tensor([sum(decay ** (t - s) for s in range(t + 1)) * dt * b * c for t in range(length)])
    torch.testing.assert_close(out.flatten(), expected)


@pytest.mark.parametrize("bad, message", [
    (dict(u=torch.zeros(2, 6)), "u must be"),
    (dict(delta=torch.zeros(2, 6, 4)), "delta has shape"),
    (dict(A=torch.zeros(5, 4)), "A must be"),
    (dict(B=torch.zeros(2, 3, 5)), "B has shape"),
    (dict(C=torch.zeros(2, 4, 4, 5)), "4 groups, which does not divide"),
    (dict(D=torch.zeros(5)), "D must be"),
    (dict(z=torch.zeros(2, 6, 4)), "z has shape"),
])
def test_bad_shapes_raise_clear_errors(bad, message):
    inputs = {k: None if v is None else v.detach() for k, v in make_inputs(2, 6, 5, 4, "variable").items()}
    inputs.update(bad)
    for backend in ("reference", "torch", "numba", "triton"):
        with pytest.raises(ValueError, match=message):
            selective_scan(**inputs, backend=backend)


def test_backend_resolution():
    assert set(BACKENDS) == {"reference", "torch", "numba", "triton", "mamba_ssm"}
    assert resolve_backend("auto", torch.device("cpu")) == "numba"  # numba is a dependency
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="unknown scan backend 'fast'"):
        resolve_backend("fast", torch.device("cpu"))


def test_auto_on_cuda_never_runs_the_python_loop_when_triton_imports(monkeypatch):
    import usm.ssm as ssm

    monkeypatch.setattr(ssm, "mamba_ssm_status", lambda: (False, "not installed"))
    monkeypatch.setattr(ssm, "triton_works", lambda device: True)  # its probe: the test below
    assert resolve_backend("auto", torch.device("cuda")) == "triton"  # triton comes with torch's wheels here
    monkeypatch.setattr(ssm, "mamba_ssm_status", lambda: (True, ""))
    assert resolve_backend("auto", torch.device("cuda")) == "mamba_ssm"
    monkeypatch.setattr(ssm, "mamba_ssm_status", lambda: (False, "not installed"))
    monkeypatch.setattr(ssm, "triton_available", lambda: (False, "not installed"))
    assert resolve_backend("auto", torch.device("cuda")) == "torch"


def test_explicit_triton_on_the_cpu_says_what_to_use():
    inputs = {k: None if v is None else v.detach() for k, v in make_inputs(1, 4, 3, 2, "variable").items()}
    with pytest.raises(ValueError, match="backend 'triton' runs on CUDA tensors"):
        selective_scan(**inputs, backend="triton")


def test_explicit_mamba_ssm_off_cuda_says_how_to_fix():
    inputs = {k: None if v is None else v.detach() for k, v in make_inputs(1, 4, 3, 2, "variable").items()}
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        selective_scan(**inputs, backend="mamba_ssm")


def mamba_kernel_contract(u, delta, A, B, C, D, z, delta_bias):
    """The dtype and layout checks of mamba_ssm's csrc/selective_scan/selective_scan.cpp, as a fake
    kernel: it raises where the real one would, and returns the reference scan otherwise."""
    assert u.dtype in (torch.float32, torch.float16, torch.bfloat16)
    assert A.dtype == torch.float32 and delta.dtype == u.dtype
    for x in (B, C):
        assert x.dtype == (u.dtype if x.dim() >= 3 else A.dtype), (x.dim(), x.dtype, u.dtype)
    assert z is None or z.dtype == u.dtype
    assert all(t is None or t.dtype == torch.float32 for t in (D, delta_bias))
    assert all(t is None or t.stride(-1) == 1 for t in (u, delta, A, B, C, D, z, delta_bias))
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)


@pytest.mark.parametrize("form", ["fixed", "variable", "grouped"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_the_mamba_ssm_wrapper_hands_the_kernel_the_dtypes_it_accepts(form, dtype):
    """Mixed dtypes as autocast and a bf16 model produce them (delta from a float32 bias-free matmul,
    B and C in bf16 even when fixed, z non-contiguous): the wrapper's casts satisfy the kernel."""
    from usm.ssm.mamba_cuda import kernel_inputs

    inputs = {k: None if v is None else v.detach() for k, v in make_inputs(2, 4, 6, 3, form).items()}
    mixed = dict(inputs, u=inputs["u"].to(dtype), B=inputs["B"].to(torch.bfloat16), C=inputs["C"].to(dtype),
                 z=inputs["z"].to(torch.float16).transpose(1, 2).contiguous().transpose(1, 2),
                 D=inputs["D"].to(dtype))
    with pytest.raises(AssertionError):  # as they come, the kernel would refuse some
        mamba_kernel_contract(**{k: mixed[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")})
    out = mamba_kernel_contract(*kernel_inputs(**{k: mixed[k] for k in
                                                  ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")}))
    expected = selective_scan_reference(**inputs, delta_softplus=True)
    torch.testing.assert_close(out.float(), expected, rtol=0.1, atol=0.1)  # bf16 / fp16 inputs, float32 sums


def test_a_mamba_ssm_build_that_imports_but_cannot_run_is_reported_unavailable():
    from usm.ssm.mamba_cuda import probe

    def broken(*args):
        raise RuntimeError("no kernel image is available for execution on the device")

    assert "kernel fails on this machine (RuntimeError: no kernel image" in probe(broken, "cpu")
    assert probe(lambda *args: selective_scan_reference(*args), "cpu") == ""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["torch", "triton", "mamba_ssm"])
@pytest.mark.parametrize("form", ["variable", "grouped", "fixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cuda_backends_match_reference(backend, form, dtype):
    from usm.ssm import mamba_ssm_status

    if backend == "mamba_ssm" and not mamba_ssm_status()[0]:
        pytest.skip(mamba_ssm_status()[1])
    inputs = make_inputs(2, 64, 129, 16, form, device="cuda", dtype=dtype)
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs)
    y, last, g = run_with_grads(BACKENDS[backend], inputs)
    rtol, atol, gtol = (RTOL, ATOL, GRAD_TOL) if dtype == torch.float32 else (3e-2, 5e-2, 3e-2)
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=rtol, atol=atol)
    torch.testing.assert_close(last.float(), last_ref.float(), rtol=rtol, atol=atol)
    assert_close_grads({k: v.float() for k, v in g_ref.items()}, {k: v.float() for k, v in g.items()}, gtol)


def assert_last_channels_match_torch(backend, batch, channels, length, device):
    """Scan every channel with ``backend``; check the last batch element's last 64 channels (the
    highest offsets) and their gradients against the torch backend run on that slice alone."""
    gen = torch.Generator(device=device).manual_seed(0)
    u = torch.randn(batch, channels, length, device=device, generator=gen).requires_grad_()
    delta = torch.rand(batch, channels, length, device=device, generator=gen).mul_(0.1).requires_grad_()
    A = -torch.rand(channels, 4, device=device, generator=gen) - 0.1
    B, C = (torch.randn(batch, 4, length, device=device, generator=gen) for _ in range(2))
    y = BACKENDS[backend](u, delta, A, B, C)
    y[-1, -64:].sum().backward()
    y_last = y[-1:, -64:].detach().clone()
    del y
    part = [t[-1:, -64:].detach().clone().requires_grad_() for t in (u, delta)]
    y_part = BACKENDS["torch"](*part, A[-64:], B[-1:], C[-1:])
    y_part.sum().backward()
    torch.testing.assert_close(y_last, y_part.detach())
    torch.testing.assert_close(u.grad[-1:, -64:], part[0].grad)
    torch.testing.assert_close(delta.grad[-1:, -64:], part[1].grad)


def test_the_last_channels_check_holds_for_the_cpu_backends():
    """The helper the GPU's offset check uses, run where it can run here."""
    assert_last_channels_match_torch("numba", 2, 128, 40, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_properties(0).total_memory < 100 * 2**30,
                    reason="needs a CUDA GPU with 100 GiB (inputs of 2^31 elements and their gradients)")
def test_triton_offsets_past_2_to_the_31_are_not_truncated():
    """batch x D x L > 2^31: an offset computed in 32 bits wraps and reads another channel's memory
    (or faults); the kernels compute them in int64."""
    assert_last_channels_match_torch("triton", 2, 2**20 + 64, 1024, "cuda")


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_triton_scans_run_on_their_tensors_gpu_not_the_current_one():
    inputs = make_inputs(2, 64, 129, 16, "variable", device="cuda:1")
    with torch.cuda.device(0):
        y, last, g = run_with_grads(BACKENDS["triton"], inputs)
    y_ref, last_ref, g_ref = run_with_grads(selective_scan_reference, inputs)
    assert y.device == torch.device("cuda", 1)
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(last, last_ref, rtol=RTOL, atol=ATOL)
    assert_close_grads(g_ref, g, GRAD_TOL)


def test_auto_reports_the_backend_that_ran():
    inputs = {k: None if v is None else v.detach() for k, v in make_inputs(1, 4, 3, 2, "variable").items()}
    selective_scan(**inputs, backend="auto")
    assert last_backend() == "numba"
    selective_scan(**inputs, backend="torch")
    assert last_backend() == "torch"


def test_numba_scan_leaves_torch_on_its_share_of_threads():
    """Starting numba's OpenMP pool resets the thread count torch shares; the scan puts it back (a
    process given one CPU must not run torch on two threads after its first scan)."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1)\n"
            "from usm.ssm.numba_cpu import selective_scan_numba\n"
            "u = torch.randn(1, 4, 8); B = torch.randn(1, 2, 8)\n"
            "selective_scan_numba(u, u.abs(), -torch.rand(4, 2), B, B)\n"
            "import numba; print(torch.get_num_threads(), numba.get_num_threads())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["1", "1"], result.stdout + result.stderr


@pytest.mark.slow
def test_a_planted_sign_error_in_the_numba_backward_fails_the_parity_check(tmp_path, monkeypatch):
    """The parity check above must be able to fail: a copy of the kernels with the sign of dA's
    accumulation flipped is caught, and named."""
    import importlib.util
    from pathlib import Path

    import usm.ssm._numba_kernels as kernels
    import usm.ssm.numba_cpu as numba_cpu

    source = Path(kernels.__file__).read_text()
    planted = source.replace("v.fma(g_log, dt, v.load(dA_acc, (n, 0)))", "v.fma(g_log, -dt, v.load(dA_acc, (n, 0)))")
    assert planted != source, "the line to plant the error in has changed"
    path = tmp_path / "planted_kernels.py"
    path.write_text(planted)
    spec = importlib.util.spec_from_file_location("planted_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(numba_cpu, "_kernels", lambda: module)

    inputs = make_inputs(2, 6, 33, 4, "variable")
    _, _, g_ref = run_with_grads(selective_scan_reference, inputs)
    y, _, g = run_with_grads(selective_scan_numba, inputs)
    torch.testing.assert_close(y, selective_scan_reference(**inputs, delta_softplus=True), rtol=RTOL, atol=ATOL)
    with pytest.raises(AssertionError, match="gradient of A"):
        assert_close_grads(g_ref, g, GRAD_TOL)


# --------------------------------------------------------------------------------------------------
# Token-major scans along a path (usm.ssm.scan_tokens): the numba kernel reads the path in place;
# every other backend gets the inputs gathered along it -- the twin it is checked against.

def token_inputs(batch, length, channels, state, seed=0, with_z=True):
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape, scale=1.0: (torch.randn(*shape, generator=gen) * scale).requires_grad_()
    return dict(u=randn(batch, length, channels), delta=randn(batch, length, channels, scale=0.5),
                A=(-torch.rand(channels, state, generator=gen) * 2 - 0.1).requires_grad_(),
                B=randn(batch, length, state), C=randn(batch, length, state), D=randn(channels),
                z=randn(batch, length, channels) if with_z else None, delta_bias=randn(channels, scale=0.1))


def token_grads(inputs, order, backend):
    from usm.ssm import scan_tokens

    y = scan_tokens(**inputs, delta_softplus=True, order=order, backend=backend)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    names = [k for k, v in inputs.items() if v is not None]
    return y, dict(zip(names, torch.autograd.grad((y * gy).sum(), [inputs[k] for k in names])))


@pytest.mark.parametrize("path", [None, "row-snake-TL", "col-snake-BL-reversed"])
@pytest.mark.parametrize("channels, with_z", [(16, False), (40, True)])
def test_numba_token_scan_along_a_path_matches_the_gathered_reference(path, channels, with_z):
    from usm.scan_orders import scan_order

    order = None if path is None else scan_order(path, 5, 7)
    inputs = token_inputs(2, 35, channels, 16, with_z=with_z)
    y_ref, g_ref = token_grads(inputs, order, "reference")
    y, g = token_grads(inputs, order, "numba")
    assert last_backend() == "numba"
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    assert_close_grads(g_ref, g, GRAD_TOL)


def test_token_scan_is_the_plain_scan_on_the_gathered_sequence():
    """scan_tokens(x, order) = selective_scan(x[:, order]^T)^T put back at the positions, spelled out."""
    from usm.scan_orders import scan_order
    from usm.ssm import scan_tokens

    inputs = {k: None if v is None else v.detach() for k, v in token_inputs(1, 12, 16, 4).items()}
    order = scan_order("col-snake-TL", 3, 4)
    y = scan_tokens(**inputs, delta_softplus=True, order=order, backend="numba")
    gathered = {k: inputs[k][:, order].transpose(1, 2) for k in ("u", "delta", "B", "C", "z")}
    plain = selective_scan_reference(**gathered, A=inputs["A"], D=inputs["D"], delta_bias=inputs["delta_bias"],
                                     delta_softplus=True)
    expected = torch.empty_like(y)
    expected[:, order] = plain.transpose(1, 2)
    torch.testing.assert_close(y, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bad, message", [
    (dict(order=torch.arange(11)), "order must be a LongTensor of the 12 positions"),
    (dict(order=torch.zeros(12, dtype=torch.long)), "exactly once"),
    (dict(order=torch.arange(12).float()), "LongTensor"),
    (dict(B=torch.zeros(1, 4, 12)), "B has shape"),
])
def test_token_scan_refuses_bad_orders_and_shapes(bad, message):
    from usm.ssm import scan_tokens

    inputs = {k: None if v is None else v.detach() for k, v in token_inputs(1, 12, 16, 4).items()}
    call = {**inputs, "order": torch.arange(12), **bad}
    with pytest.raises(ValueError, match=message):
        scan_tokens(**call, backend="numba")


def test_auto_falls_back_from_a_triton_scan_that_fails_its_probe(monkeypatch):
    """On CUDA, ``auto`` picks Triton only after a tiny scan compiles, runs and agrees with the
    reference; a failure costs one warning and the torch backend, not the training run."""
    import usm.ssm as ssm

    assert ssm.probe("reference", "cpu") is None and ssm.probe("torch", "cpu") is None

    def broken(*args):
        raise RuntimeError("PassManager::run failed\nmore lines")

    def wrong(u, *args):
        return u * 2

    monkeypatch.setitem(ssm.BACKENDS, "triton", broken)
    assert ssm.probe("triton", "cpu") == "RuntimeError: PassManager::run failed"
    monkeypatch.setitem(ssm.BACKENDS, "triton", wrong)
    assert ssm.probe("triton", "cpu").startswith("its output differs from the reference scan's by")

    monkeypatch.setattr(ssm, "mamba_ssm_status", lambda: (False, ""))
    monkeypatch.setattr(ssm, "triton_available", lambda: (True, ""))
    for problem, chosen in (("RuntimeError: PassManager::run failed", "torch"), (None, "triton")):
        ssm.triton_works.cache_clear()
        monkeypatch.setattr(ssm, "probe", lambda name, device, problem=problem: problem)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert ssm.resolve_backend("auto", torch.device("cuda")) == chosen
            assert ssm.resolve_backend("auto", torch.device("cuda")) == chosen  # probed once per device
        assert len(caught) == (1 if problem else 0)
        said = str(caught[0].message) if caught else ""
        assert not problem or "failed its probe on cuda (RuntimeError: PassManager::run failed)" in said
    ssm.triton_works.cache_clear()
