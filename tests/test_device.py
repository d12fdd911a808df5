"""Precision "auto": bf16 autocast only where the CPU's kernels compute it natively."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from facegan.tasks.training.device import amp_dtype, cpu_has_bf16

pytestmark = pytest.mark.no_prefect

CPU = torch.device("cpu")
HARDWARE_BF16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def auto_precision_in_a_fresh_process(**env: str) -> str:
    """What --precision auto picks in a new interpreter (ATEN_CPU_CAPABILITY is read once, at
    torch's first dispatch)."""
    code = (
        "import torch; from facegan.tasks.training.device import amp_dtype; "
        "print(amp_dtype(torch.device('cpu'), 'auto'))"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_fp32_and_forced_precisions_ignore_the_cpu():
    assert amp_dtype(CPU, "fp32") is None
    assert amp_dtype(CPU, "bf16") is torch.bfloat16
    assert amp_dtype(CPU, "auto") is (torch.bfloat16 if HARDWARE_BF16 else None)


@pytest.mark.skipif(not HARDWARE_BF16, reason="this CPU has no bf16 units: auto is fp32 anyway")
def test_auto_is_fp32_when_the_kernels_are_capped_below_bf16(monkeypatch):
    """A CPU with bf16 units run as an AVX2-only one (the ISA capped): auto must not pick the
    emulated bf16; uncapped, or capped at an ISA that still has bf16, it keeps bf16."""
    assert cpu_has_bf16()
    for isa in ("AVX2", "avx512_core", "AVX512_CORE_VNNI"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert not cpu_has_bf16() and amp_dtype(CPU, "auto") is None, isa
        assert amp_dtype(CPU, "bf16") is torch.bfloat16  # forcing still forces
    for isa in ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_AMX"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert cpu_has_bf16(), isa
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert auto_precision_in_a_fresh_process(ATEN_CPU_CAPABILITY="avx2") == "None"
    assert auto_precision_in_a_fresh_process(DNNL_MAX_CPU_ISA="AVX2") == "None"
    assert auto_precision_in_a_fresh_process() == "torch.bfloat16"
