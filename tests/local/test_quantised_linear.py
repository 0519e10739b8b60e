"""chatstack's quantised linear layers' arithmetic, in the engine's Python (torch and vLLM): int8's two paths
(the kernel for a few rows, dequantise-then-GEMM for many) and int4's kernel compute `x @ W.T` for the
weight W that the checkpoint's tensors stand for, at few rows and many."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from backends.local.settings import LocalSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PYTHON = LocalSettings(_env_file=None).resolved_engine_python()  # type: ignore[call-arg]

CHECK = """
import json, os, torch
from pathlib import Path
# The kernel is built from scratch here (a fresh machine's first start), where a build killed midway
# left torch's lock file behind: the build must not wait on it forever.
build = Path(os.environ["CHATSTACK_KERNEL_DIR"]) / f"torch-{torch.__version__}"
build.mkdir(parents=True)
(build / "lock").touch()
from backends.local.convert import dequantize_int4, dequantize_int8, quantize_int4, quantize_int8, unpack_int4
from backends.local.cpu_features import cpu_flags
from backends.local.int8_decode import NEEDS, decode_kernel
from backends.local.quantised_linear import DEQUANT_BLOCK, GEMM_FROM_ROWS, int4_matmul, int8_matmul
kernel = decode_kernel()
assert (kernel is not None) == (NEEDS <= cpu_flags()), "the decode kernel did not build, on a CPU with AVX2"
torch.manual_seed(0)
n, k = 2 * DEQUANT_BLOCK + 64, 320  # a partial last block too
weight = torch.randn(n, k) / 20
i8 = quantize_int8(weight)
i4 = quantize_int4(weight)
scale = i8["weight_scale"].reshape(-1)
sz = torch.stack((i4["scales"], i4["zeros"]), -1).transpose(0, 1).contiguous()
packed = torch._convert_weight_to_int4pack_for_cpu(unpack_int4(i4["qweight"]), 1)
meant = {
    "int8": dequantize_int8(i8["weight"], i8["weight_scale"]).double(),
    "int4": dequantize_int4(i4["qweight"], i4["scales"], i4["zeros"]).double(),
}
errors = {}
for rows in (1, GEMM_FROM_ROWS - 1, GEMM_FROM_ROWS, 3 * GEMM_FROM_ROWS):
    x = torch.randn(rows, k).to(torch.bfloat16)
    outs = {
        "int8": int8_matmul(x, i8["weight"], scale.to(torch.bfloat16), scale),
        "int4": int4_matmul(x, packed, sz),
    }
    for name, out in outs.items():
        assert out.shape == (rows, n) and out.dtype == torch.bfloat16, (out.shape, out.dtype)
        reference = x.double() @ meant[name].t()
        errors[f"{name} {rows}"] = float((out.double() - reference).norm() / reference.norm())
    errors[f"int4 vs weight"] = float((meant["int4"] - weight.double()).norm() / weight.double().norm())
kernel_errors = {}
for rows, outlier in ((1, False), (3, False), (4, False), (5, False), (GEMM_FROM_ROWS - 1, False), (5, True)):
    x = torch.randn(rows, k).to(torch.bfloat16)
    if outlier:  # as real activations have: it sets its block's scale
        x[2, 7] = 200
    out = int8_matmul(x, i8["weight"], scale.to(torch.bfloat16), scale, kernel)
    assert out.shape == (rows, n) and out.dtype == torch.bfloat16, (out.shape, out.dtype)
    reference = x.double() @ meant["int8"].t()
    name = "outlier" if outlier else rows
    kernel_errors[f"int8 kernel {name}"] = float((out.double() - reference).norm() / reference.norm())
print("KERNEL " + json.dumps(kernel_errors if kernel is not None else None))
print("RESULT " + json.dumps(errors))
"""


def test_both_paths_compute_what_the_tensors_mean(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ENGINE_PYTHON), "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CHATSTACK_KERNEL_DIR": str(tmp_path / "kernels")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    errors = json.loads(line.removeprefix("RESULT "))
    assert len(errors) == 9, errors
    # The tensors mean the weight up to 4-bit rounding (uniform values: about a tenth)...
    assert 0.01 < errors.pop("int4 vs weight") < 0.2, errors
    # ...and both paths compute with that meaning up to bf16 arithmetic: a few parts in a thousand, where a
    # wrong nibble order, transpose, scale row or block boundary would be off by order one.
    assert all(error < 0.01 for error in errors.values()), errors
    [line] = [line for line in result.stdout.splitlines() if line.startswith("KERNEL ")]
    kernel_errors = json.loads(line.removeprefix("KERNEL "))
    if kernel_errors is not None:  # None only on a CPU without AVX2 (the check above asserts that)
        assert len(kernel_errors) == 6, kernel_errors
        # The decode kernel rounds the activations to 16 bits per block of 32, finer than bf16: as exact
        # as the other paths, also beside an outlier 200 times the others (8 bits gave 1.4% there).
        assert all(error < 0.01 for error in kernel_errors.values()), kernel_errors
