"""Where and how compute runs: the device, the thread count and bfloat16, found by probing.

`pick_device()` is CUDA when present, else CPU; `use_bf16()` is bf16 on CUDA and on CPUs that
compute it natively (AMX, AVX512-BF16), fp32 elsewhere; `pick_threads()` leaves the cores
other processes keep busy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch


def pick_device(requested: str | None = None) -> str:
    """`requested`, else CUDA when present, else CPU."""
    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_threads(requested: int | None = None) -> int:
    """`requested`, else the cores not busy now (cpu count - `busy_cores()`, at least 1).
    On a shared 2-core machine two torch threads next to another busy process ran a training
    step 3.5x slower than one thread (OpenMP threads spin-waiting on each other)."""
    if requested:
        return requested
    return max(1, (os.cpu_count() or 1) - int(busy_cores() + 0.5))


def busy_cores(seconds: float = 0.2) -> float:
    """How many cores other processes keep busy: sampled from /proc/stat over `seconds`, else
    the 1-minute load average. The load average lags by about a minute, so right after a
    training job it still reported a busy core, and `eval search` on the idle 2-core machine
    ran on one thread (10 min 49 s with an empty cache against 8 min 40 s on two)."""
    first = _cpu_times()
    if first is None:
        return os.getloadavg()[0]
    time.sleep(seconds)
    second = _cpu_times()
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (total - idle) / total if total > 0 else os.getloadavg()[0]


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle + iowait) jiffies of all CPUs from /proc/stat; None where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[3] + fields[4]  # user nice system idle iowait irq softirq steal


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AMX or AVX512-BF16), where autocast is ~2x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def use_bf16(requested: bool | None, device: str) -> bool:
    """`requested`, else bf16 on CUDA and on CPUs with native bf16; fp32 elsewhere."""
    if requested is not None:
        return requested
    return device.startswith("cuda") or (device == "cpu" and cpu_has_bf16())


def autocast(device: str, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on `device` (weights stay float32, so fine-tuning is safe)."""
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=enabled)
