"""The engine's CPU report: flags are read from /proc/cpuinfo (x86 and Arm), never assumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.local.cpu_features import bf16_warning, cpu_flags, describe

AVX2_ONLY = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 fma avx avx2\n\nprocessor\t: 1\n"
AVX512_BF16 = "flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "described", "warns"),
    [
        (AVX2_ONLY, "avx2", True),
        (AVX512_BF16, "avx2, avx512f, avx512_vnni, avx512_bf16", False),
        (ARM, "bf16", False),
        ("processor\t: 0\n", "no AVX2, AVX-512 or AMX", False),
    ],
)
def test_flags_are_read_and_bf16_without_native_support_is_warned_about(
    tmp_path: Path, cpuinfo: str, described: str, warns: bool
) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    flags = cpu_flags(path)
    assert describe(flags) == described
    assert (bf16_warning("bf16", flags) is not None) is warns
    assert bf16_warning("int8", flags) is None


def test_a_machine_without_cpuinfo_reports_nothing_and_warns_about_nothing(tmp_path: Path) -> None:
    flags = cpu_flags(tmp_path / "missing")
    assert flags == frozenset()
    assert bf16_warning("bf16", flags) is None


def test_this_linux_machine_reports_its_own_flags() -> None:
    assert cpu_flags(), "/proc/cpuinfo lists the CPU's flags"
