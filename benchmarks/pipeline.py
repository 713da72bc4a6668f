"""Wall time of the default Snakemake pipeline, from nothing, in a temporary working directory."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, BenchError


def bench_pipeline(*, cores: int, config: Path = ROOT / "config" / "config.yaml") -> float:
    if not config.exists():
        raise BenchError(f"--pipeline needs {config}, which does not exist; write it or drop --pipeline")
    snakemake = Path(sys.executable).with_name("snakemake")
    with tempfile.TemporaryDirectory(prefix="fedakd-bench-pipeline-") as tmp:
        command = [str(snakemake if snakemake.exists() else "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
                   "--profile", str(ROOT / "workflow" / "profiles" / "default"), "--configfile", str(config),
                   "--directory", tmp, "--cores", str(cores)]
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise BenchError(f"the pipeline failed (exit status {completed.returncode}):\n{completed.stderr[-4000:]}")
    return seconds
