"""Performance benchmark of the engine (`make bench`): one run measures, on this machine,

- engine_vs_bare: RoundContext.local_sgd's throughput over a bare PyTorch loop on the same tensors
  (the engine's overhead per step; 1.0 = none)                                  [throughput.py]
- speedup_vs_reference: seconds per FedAvg round of benchmarks/reference.py (the common per-sample /
  deepcopy / per-key style) over the engine's, in NIID-Bench's setting          [speedup.py]
- startup_seconds (wall and CPU, launch to the first local step), overhead_cpu_seconds (CPU outside rounds),
  the ten largest imports and peak_rss_mb of a `fedakd train` job launched as the pipeline launches it,
  and the overhead share of a small study; with --baseline REV, the same for that commit, side by side
                                                                                [overhead.py]
- scaling: seconds per round against the number of clients and the amount of data [throughput.py]
- fedakd_overhead: seconds per round of each listed method over fedavg           [throughput.py]
- pipeline_seconds (only with --pipeline): the default Snakemake pipeline's wall time [pipeline.py]

Figures are medians of several repeats after a warm-up. The table (table.py) is printed and, with
every detail, written atomically to results/bench/summary.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (`python benchmarks/bench.py`): make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.common import FULL, QUICK, BenchError, load_data, machine_info, stage  # noqa: E402
from benchmarks.table import format_table  # noqa: E402
from fedakd.io import atomic_write_json  # noqa: E402

FORMAT_VERSION = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke version (seconds; used by the tests)")
    parser.add_argument("--pipeline", action="store_true", help="also time the default Snakemake pipeline")
    parser.add_argument("--repeats", type=int, help="timed repeats per measure (default 3; 1 with --quick)")
    parser.add_argument("--local-epochs", type=int, help="E for speedup_vs_reference (default 10; 1 with --quick)")
    parser.add_argument("--reference-rounds", type=int, default=2, help="rounds timed for speedup_vs_reference")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in-process and for the job")
    parser.add_argument("--methods", nargs="+", default=["fedakd", "fedavg-smote"],
                        help="methods whose seconds per round are compared with fedavg's")
    parser.add_argument("--data-root", default="data", help="where to look for Fashion-MNIST first")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only the job-overhead measures (minutes, not the whole benchmark's)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the job overhead of this commit's code, in the same run (e.g. HEAD~5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bench/summary.json"))
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.local_epochs is None:
        args.local_epochs = 1 if args.quick else 10
    for name in ("repeats", "local_epochs", "reference_rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from fedakd.config import ConfigError
    from fedakd.data import DataError

    args = parse_args(argv)
    try:
        run(args)
    except (BenchError, ConfigError, DataError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


def measure_job_overhead(args: argparse.Namespace) -> dict:
    """The job-overhead measures (benchmarks/overhead.py) for this checkout and, with --baseline, that commit."""
    from benchmarks.overhead import Tree, baseline_tree, bench_overhead

    stage("job overhead: start-up, CPU outside rounds, imports, study share (`fedakd train` subprocesses)"
          + (f", beside {args.baseline}" if args.baseline else ""))
    with tempfile.TemporaryDirectory(prefix="fedakd-baseline-") as tmp:
        trees = [Tree("current", ROOT, None), *([baseline_tree(args.baseline, Path(tmp))] if args.baseline else [])]
        return bench_overhead(trees, data_root=str(Path(args.data_root).resolve()), quick=args.quick,
                              repeats=args.repeats)


def overhead_summary(report: dict) -> dict:
    current = report["trees"]["current"]
    return {"startup_seconds": current["startup_wall_seconds"], "startup_cpu_seconds": current["startup_cpu_seconds"],
            "overhead_cpu_seconds": current["overhead_cpu_seconds"],
            "study_overhead_share": current["study"]["overhead_share"], "peak_rss_mb": current["peak_rss_mb"]}


def run(args: argparse.Namespace) -> None:
    import torch

    from benchmarks.pipeline import bench_pipeline
    from benchmarks.speedup import bench_reference
    from benchmarks.table import format_overhead_table
    from benchmarks.throughput import bench_engine_vs_bare, bench_method_overhead, bench_scaling, warm_up

    if args.overhead_only:
        report = measure_job_overhead(args)
        summary = {"format_version": FORMAT_VERSION, "quick": args.quick, "machine": machine_info(1),
                   "repeats": args.repeats, **overhead_summary(report), "details": {"overhead": report}}
        atomic_write_json(args.out, summary)
        print(format_overhead_table(summary))
        print(f"wrote {args.out}")
        return
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    stage("loading Fashion-MNIST and warming up")
    data = load_data(args.data_root, sizes)
    warm_up(data, seed=args.seed)
    stage("engine_vs_bare")
    bare = bench_engine_vs_bare(data, examples=sizes.bare_examples, repeats=args.repeats, seed=args.seed)
    stage(f"speedup_vs_reference ({args.reference_rounds} rounds of E={args.local_epochs}, engine then reference)")
    reference = bench_reference(data, data_root=args.data_root, rounds=args.reference_rounds,
                                local_epochs=args.local_epochs, seed=args.seed)
    stage("scaling")
    scaling = bench_scaling(data, sizes, repeats=args.repeats, seed=args.seed)
    stage("fedakd_overhead")
    overhead = bench_method_overhead(data, sizes, repeats=args.repeats, seed=args.seed, methods=tuple(args.methods))
    report = measure_job_overhead(args)
    pipeline_seconds = None
    if args.pipeline:
        stage("pipeline_seconds (the default Snakemake pipeline)")
        pipeline_seconds = bench_pipeline(cores=os.cpu_count() or 1)
    summary = {
        "format_version": FORMAT_VERSION, "quick": args.quick, "machine": machine_info(args.threads),
        "repeats": args.repeats, "seed": args.seed,
        "engine_vs_bare": bare["ratio"],
        "speedup_vs_reference": reference["speedup"],
        **overhead_summary(report),
        "scaling": scaling,
        "fedakd_overhead": overhead,
        "pipeline_seconds": pipeline_seconds,
        "details": {"engine_vs_bare": bare, "speedup_vs_reference": reference, "overhead": report},
    }
    atomic_write_json(args.out, summary)
    print(format_table(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
