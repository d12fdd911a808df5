"""Device choice (CUDA, then MPS, then CPU) and mixed precision.

bf16 autocast + channels_last runs the DCGAN step about 2x faster than fp32 on a CPU with bf16
units (AVX512-BF16 or AMX), and about 12x SLOWER on one without (an AVX2-only AMD EPYC, measured:
the bf16 arithmetic is emulated). `precision="auto"` (the default) therefore takes bf16 only where
the hardware has it; "bf16" and "fp32" force one or the other.
"""

from __future__ import annotations

import contextlib
import os

import torch

from facegan.config.errors import InputError


def pick_device(name: str = "auto") -> torch.device:
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available on this machine (use --device auto)")
    if name == "mps" and not has_mps:
        raise InputError("--device mps: Apple MPS is not available on this machine (use --device auto)")
    if name not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as torch's own probes say,
    and its kernels may use those units: with them capped to an older instruction set
    (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY, to run as an AVX2-only CPU would), bf16 is emulated
    and a convolution ran ~5x slower than in fp32 (measured, session 47)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(getattr(torch.cpu, probe, lambda: False)() for probe in probes):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    onednn_bf16 = isa == "ALL" or any(unit in isa for unit in ("BF16", "AMX", "FP16", "AVX10"))
    return onednn_bf16 and torch.backends.cpu.get_cpu_capability() == "AVX512"


def amp_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. "auto" takes bf16 on CUDA and on CPUs with bf16
    units; MPS always runs fp32 (bf16 autocast is patchy there); CUDA without bf16 gets fp16."""
    if precision == "fp32" or device.type not in ("cpu", "cuda"):
        return None
    if device.type == "cpu":
        return torch.bfloat16 if precision == "bf16" or cpu_has_bf16() else None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """What a run computed in, for logs and the facegan.precision tag."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def busy_cores(window: float = 0.5) -> float:
    """Cores busy right now with OTHER processes' work: psutil's system-wide CPU use over `window`
    seconds, minus this process's own CPU time in the window (its OpenMP threads spin for a while
    after a parallel region and would count as "busy"). A sample, not the load average, so work
    that just ended (say, a benchmark's previous round) is not counted as still running."""
    import psutil

    me = psutil.Process()
    own = sum(me.cpu_times()[:2])
    percent = psutil.cpu_percent(interval=window)  # all cores together, 0-100
    own = sum(me.cpu_times()[:2]) - own
    cores = psutil.cpu_count() or 1
    return max(percent / 100 * cores - own / window, 0.0)


def auto_threads() -> int:
    """CPU threads for training: the cores not already busy, at least 1.

    On a shared machine an oversubscribed OpenMP pool is far slower than a smaller one (each
    barrier waits for a descheduled thread)."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - busy_cores())))


def set_threads(threads: int | None) -> int:
    """Set torch's CPU threads (None: auto_threads()); returns the number used."""
    threads = threads or auto_threads()
    torch.set_num_threads(threads)
    return threads
