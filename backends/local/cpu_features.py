"""What this machine's CPU offers the engine: the vector and matrix extensions that decide how fast each
precision runs (measured in docs/embedded-model.md). Read, never assumed: machines differ (AMD or Intel,
AVX2 only, AVX-512 with or without bf16, AMX)."""

from __future__ import annotations

from pathlib import Path

NOTABLE = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "bf16")
"""x86 flags, and Arm's `bf16` feature, in the order they are reported."""
NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first CPU's flags (x86 `flags`, Arm `Features`); empty where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def describe(flags: frozenset[str]) -> str:
    present = [flag for flag in NOTABLE if flag in flags]
    return ", ".join(present) if present else "no AVX2, AVX-512 or AMX"


def bf16_warning(precision: str, flags: frozenset[str]) -> str | None:
    """Why bf16 weights are a poor choice on this CPU, or None. Without native bf16 arithmetic, vLLM's bf16
    matrix multiplications fall back to a slow path (issue 14: int8 prefilled 3.8x and decoded 1.4x
    faster on such a CPU)."""
    if precision != "bf16" or not flags or flags & NATIVE_BF16:
        return None
    return (
        "bf16 weights on a CPU without native bf16 arithmetic (no AVX512-BF16 or AMX) are slow: "
        "CHATSTACK_MODEL_PRECISION=int8 prefills about 4x and decodes about 1.4x faster here"
    )
