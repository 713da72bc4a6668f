"""`make gpu-check`: what a session lent a GPU should check, in one script of a few minutes.

1. the smoke study (config/smoke.yaml, every method) through the Snakemake pipeline on CUDA, with
   several training jobs sharing the one GPU through the pipeline's ``gpu`` resource
   (``--resources gpu=4``); nvidia-smi is sampled to see how many job processes held the GPU at once;
2. determinism: the same Fashion-MNIST fedakd job trained twice on CUDA gives the same metrics.json;
3. GPU figures of the engine, in process: samples per second, seconds per round and peak GPU memory of
   FedAvg and FedAKD rounds on Fashion-MNIST (NIID-Bench's federation, E = 1), in float32 and with
   ``amp`` (bfloat16 autocast).

It prints one summary and writes it to results/bench/gpu.json. Without CUDA it stops at once with one
line, before any work, and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

#: Jobs allowed on the GPU at once in the pipeline check (Snakemake's gpu resource), and cores for it.
SHARED_JOBS, CORES = 4, 8
#: Volatile keys of a metrics.json: they name the code or the machine, not the result.
VOLATILE = {"git_commit"}


class GpuCheckError(RuntimeError):
    """The check cannot run here, or a step failed."""


def require_cuda() -> dict[str, Any]:
    """The GPU's description; GpuCheckError at once when torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        raise GpuCheckError(f"no CUDA device is visible to torch {torch.__version__} (its CUDA: {built}); run "
                            f"`make gpu-check` on a machine with an NVIDIA GPU and a CUDA build of torch")
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1), "count": torch.cuda.device_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda}


class GpuProcessSampler(threading.Thread):
    """Counts, every half second, the processes nvidia-smi lists on the GPU; keeps the largest count."""

    def __init__(self):
        super().__init__(daemon=True)
        self.most, self.stopped = 0, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            listed = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                    capture_output=True, text=True)
            pids = [line for line in listed.stdout.splitlines() if line.strip()]
            self.most = max(self.most, len(pids))
            self.stopped.wait(0.5)


def smoke_pipeline(workdir: Path) -> dict[str, Any]:
    """The smoke study on CUDA, SHARED_JOBS training jobs at a time on one GPU."""
    sampler = GpuProcessSampler() if shutil.which("nvidia-smi") else None
    if sampler:
        sampler.start()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(workdir), "--configfile", str(ROOT / "config" / "smoke.yaml"), "--config", "device=cuda",
                           "--cores", str(CORES), "--resources", f"gpu={SHARED_JOBS}", "--set-threads", "train=1"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if sampler:
        sampler.stopped.set()
        sampler.join()
    if done.returncode != 0:
        raise GpuCheckError(f"the smoke pipeline failed on CUDA:\n{(done.stdout + done.stderr)[-4000:]}")
    paths = sorted((workdir / "results" / "runs").rglob("metrics.json"))
    runs = [json.loads(path.read_text()) for path in paths]
    on_cpu = [path for path, run in zip(paths, runs) if not str(run["device"]).startswith("cuda")]
    if not runs or on_cpu:
        raise GpuCheckError(f"smoke pipeline: {len(on_cpu)} of {len(runs)} runs did not train on CUDA: {on_cpu[:3]}")
    return {"wall_seconds": seconds, "jobs": len(runs), "gpu_resource": SHARED_JOBS, "cores": CORES,
            "most_processes_on_gpu_at_once": sampler.most if sampler else None,
            "report": (workdir / "reports" / "report.md").exists()}


def determinism(workdir: Path, data_root: str) -> dict[str, Any]:
    """One Fashion-MNIST fedakd job (the default study's, 3 rounds) trained twice on CUDA."""
    outs = []
    for attempt in ("a", "b"):
        out = workdir / f"determinism-{attempt}"
        done = subprocess.run([sys.executable, "-m", "fedakd.cli", "train", "--config", str(ROOT / "config" /
                               "config.yaml"), "--dataset", "fashion-mnist", "--setting", "lt10-dir0.5", "--method",
                               "fedakd", "--seed", "0", "--out", str(out), "--no-track", "--set", "device=cuda",
                               "--set", "federation.rounds=3", "--set", f"data_root={data_root}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise GpuCheckError(f"the determinism job failed on CUDA:\n{done.stderr[-4000:]}")
        outs.append({k: v for k, v in json.loads((out / "metrics.json").read_text()).items() if k not in VOLATILE})
    first, second = outs
    differing = sorted(key for key in first if first[key] != second.get(key))
    return {"identical": not differing, "differing_keys": differing,
            "balanced_accuracy": [run["final"]["balanced_accuracy"] for run in outs]}


def round_figures(data_root: str, rounds: int = 4) -> list[dict[str, Any]]:
    """Seconds per round, samples per second and peak memory of engine rounds on CUDA (median after the first)."""
    import torch

    from benchmarks.common import BACKBONE, FULL, NIID_FEDERATION, NIID_SPLIT, default_options, load_data, make_split
    from fedakd.engine import FederatedData, RunSetup, run_federation
    from fedakd.registry import get_method

    device = torch.device("cuda")
    data = load_data(data_root, FULL)
    partition = make_split(data, clients=10, split=NIID_SPLIT, proxy_per_class=50, seed=0)
    federation = {**NIID_FEDERATION, "local_epochs": 1, "rounds": rounds, "proxy_per_class": 50}
    figures = []
    for method_name, amp in (("fedavg", False), ("fedavg", True), ("fedakd", False), ("fedakd", True)):
        federated = FederatedData.from_indices(
            data.x_train, data.y_train, data.x_test, data.y_test, client_indices=partition.client_indices,
            num_classes=data.num_classes, groups=partition.groups, device=device,
            transfer_indices=partition.transfer_indices)
        torch.cuda.reset_peak_memory_stats()
        method = get_method(method_name)(default_options(method_name))
        result = run_federation(method, federated, RunSetup(federation, BACKBONE, 0, device, amp))
        client = [t["client_seconds"] for t in result.timings][1:]
        total = [t["client_seconds"] + t["server_seconds"] + t["eval_seconds"] for t in result.timings][1:]
        examples = sum(len(c) for c in partition.client_indices) * federation["local_epochs"]
        figures.append({"method": method_name, "amp": amp, "seconds_per_round": statistics.median(total),
                        "samples_per_second": examples / statistics.median(client),
                        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
                        "final_accuracy": result.history[-1]["accuracy"]})
        del federated
        torch.cuda.empty_cache()
    return figures


def summary_lines(summary: dict[str, Any]) -> list[str]:
    gpu, pipe, det = summary["gpu"], summary["smoke_pipeline"], summary["determinism"]
    lines = [f"gpu-check on {gpu['name']} ({gpu['memory_gb']} GB), torch {gpu['torch']}, CUDA {gpu['cuda']}",
             f"smoke pipeline on CUDA: {pipe['jobs']} jobs in {pipe['wall_seconds']:.0f} s with --resources "
             f"gpu={pipe['gpu_resource']}; at most {pipe['most_processes_on_gpu_at_once']} job processes on the GPU at once",
             "determinism (fedakd, fashion-mnist, 3 rounds, twice): "
             + ("identical metrics.json" if det["identical"] else f"DIFFERENT in {', '.join(det['differing_keys'])}")]
    for row in summary["rounds"]:
        lines.append(f"{row['method']:>7} amp={str(row['amp']):5}: {row['seconds_per_round']:.2f} s/round, "
                     f"{row['samples_per_second']:,.0f} samples/s, peak {row['peak_memory_mb']:.0f} MB")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "gpu.json")
    parser.add_argument("--data-root", default=str(ROOT / "data"), help="where to look for Fashion-MNIST first")
    args = parser.parse_args(argv)
    from fedakd.data import DataError
    from fedakd.io import atomic_write_json

    try:
        gpu = require_cuda()
        with tempfile.TemporaryDirectory(prefix="fedakd-gpu-check-") as tmp:
            started = time.perf_counter()
            print("gpu-check: the smoke pipeline on CUDA", file=sys.stderr, flush=True)
            pipeline = smoke_pipeline(Path(tmp) / "smoke")
            print("gpu-check: determinism", file=sys.stderr, flush=True)
            same = determinism(Path(tmp), args.data_root)
            print("gpu-check: seconds per round, samples per second, memory", file=sys.stderr, flush=True)
            rounds = round_figures(args.data_root)
        summary = {"gpu": gpu, "smoke_pipeline": pipeline, "determinism": same, "rounds": rounds,
                   "wall_seconds": time.perf_counter() - started, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_json(args.out, summary)
    except (GpuCheckError, DataError) as exc:
        print(f"gpu-check: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(summary)))
    print(f"wrote {args.out}")
    return 0 if same["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
