"""The machine a result comes from: CPU model, cores, torch and Python versions, torch threads. Floating-point
results are bit-identical on one CPU kind with one torch version and thread count, not across them, so a run
records it (timings.json) and ``fedakd verify`` compares it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """What decides bit-identity: the CPU model, torch and Python, and the torch threads (torch's current number
    when not given); the core count and platform for the reader."""
    import torch

    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": threads if threads is not None else torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform()}


def same_kind(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two machines should give bit-identical results: same CPU model, torch version and threads."""
    keys = ("cpu_model", "torch", "torch_threads")
    return bool(a and b) and all(a.get(k) == b.get(k) for k in keys)
