"""What a benchmark ran on, printed with every table: figures without it mean little."""

from __future__ import annotations

import datetime
import os
import platform
from importlib.metadata import version
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program, in MB.

    VmHWM, not getrusage's ru_maxrss: a child started by fork + exec keeps the
    parent's ru_maxrss, so a small child of a big test runner reports the runner's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def describe_machine(threads: int, *packages: str) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        # Other processes share the machine: a high load makes all timings suspect.
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        **{package: version(package) for package in packages},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
