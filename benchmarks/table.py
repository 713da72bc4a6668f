"""The benchmark's one table: every measure, its value and what it was measured on."""

from __future__ import annotations

from typing import Any


def overhead_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """One row per measure and code tree (current, and the baseline commit when measured beside it)."""
    rows = []
    trees = report["trees"]
    current = trees["current"]
    for label, tree in trees.items():
        tag = "" if label == "current" else f" [{label}]"
        ratio = "" if label == "current" else (
            f"; current/baseline {current['overhead_cpu_seconds'] / tree['overhead_cpu_seconds']:.2f}")
        study = tree["study"]
        rows += [
            (f"startup_seconds{tag}", f"{tree['startup_wall_seconds']:.2f}",
             f"wall, launch to first local step; CPU {tree['startup_cpu_seconds']:.2f} s ({report['job']})"),
            (f"overhead_cpu_seconds{tag}", f"{tree['overhead_cpu_seconds']:.2f}",
             f"CPU outside rounds per job (2·cpu(1 round) − cpu(2 rounds): "
             f"{tree['overhead_cpu_seconds_by_rounds']:.2f}; whole 1-round job {tree['job_cpu_seconds']['1 round']:.2f})"
             + ratio),
            (f"study_overhead_share{tag}", f"{study['overhead_share']:.0%}",
             f"{study['jobs']} jobs ({study['jobs_are']}): {study['overhead_cpu_seconds']:.1f} of "
             f"{study['total_cpu_seconds']:.1f} CPU-s outside rounds (tracking step {study['tracking_step_cpu_seconds']:.1f})"),
            (f"largest_imports{tag}", f"{tree['imports'][0]['seconds']:.2f}" if tree["imports"] else "-",
             ", ".join(f"{row['module']} {row['seconds']:.2f}" for row in tree["imports"])),
            (f"peak_rss_mb{tag}", f"{tree['peak_rss_mb']:.0f}", "ru_maxrss of the job process (os.wait4)"),
        ]
    return rows


def _header(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    return (f"{m['cpu_model']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
            f"Python {m['python']}{' [--quick]' if summary['quick'] else ''}")


def format_overhead_table(summary: dict[str, Any]) -> str:
    from tabulate import tabulate

    return _header(summary) + "\n" + tabulate(overhead_rows(summary["details"]["overhead"]),
                                              headers=("measure", "value", "detail"))


def format_table(summary: dict[str, Any]) -> str:
    from tabulate import tabulate

    details = summary["details"]
    ref, bare = details["speedup_vs_reference"], details["engine_vs_bare"]
    scaling, overhead = summary["scaling"], summary["fedakd_overhead"]
    by_clients = scaling["seconds_per_round"]["by_clients"]
    by_fraction = scaling["seconds_per_round"]["by_data_fraction"]
    e = ref["federation"]["local_epochs"]
    ratios = {key.removesuffix("_over_fedavg"): value for key, value in overhead.items() if key.endswith("_over_fedavg")}
    rows = [
        ("engine_vs_bare", f"{summary['engine_vs_bare']:.3f}",
         f"{bare['engine_samples_per_second']:.0f} vs {bare['bare_samples_per_second']:.0f} samples/s "
         f"({bare['examples']} examples, batch {bare['batch_size']})"),
        ("speedup_vs_reference", f"{summary['speedup_vs_reference']:.2f}x",
         f"{ref['reference_seconds_per_round']:.1f} s vs {ref['engine_seconds_per_round']:.1f} s per round (E={e}); "
         f"test accuracy reference {ref['reference_accuracy'][-1]:.4f}, engine {ref['engine_accuracy'][-1]:.4f} "
         f"after {len(ref['engine_accuracy'])} round(s)"),
        *overhead_rows(details["overhead"]),
        ("scaling (clients)", ", ".join(f"{k}: {s:.2f} s" for k, s in by_clients.items()),
         "; ".join(f"{key} = {value:.2f}" for key, value in scaling.items() if "_over_" in key)),
        ("scaling (data)", ", ".join(f"{float(f):.0%}: {s:.2f} s" for f, s in by_fraction.items()), "10 clients, E=1"),
        ("fedakd_overhead", f"{ratios.get('fedakd', float('nan')):.2f}x",
         "over fedavg per round: " + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
         + "; per round " + ", ".join(f"{k} {s:.2f} s" for k, s in overhead["seconds_per_round"].items())),
        ("pipeline_seconds", "-" if summary["pipeline_seconds"] is None else f"{summary['pipeline_seconds']:.0f}",
         "with --pipeline only"),
    ]
    return _header(summary) + "\n" + tabulate(rows, headers=("measure", "value", "detail"))
