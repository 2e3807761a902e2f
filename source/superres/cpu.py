"""Facts about the CPU this process runs on, read without importing any runtime."""

from __future__ import annotations

import functools
import os
from pathlib import Path


@functools.cache
def native_bf16_cpu() -> bool:
    """True where bf16 runs on matrix units (AMX) or AVX512-BF16, not emulated.

    torch's own check only asks for AVX-512, where bf16 is emulated and slower than
    fp32, so the CPU flags decide (Linux, which is where Lambda runs).
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
