"""The benchmark's one table: every measure, its value and what it was measured on."""

from __future__ import annotations

from typing import Any


def format_table(summary: dict[str, Any]) -> str:
    from tabulate import tabulate

    m, details = summary["machine"], summary["details"]
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
        ("startup_seconds", f"{summary['startup_seconds']:.2f}",
         f"{details['startup']['config']}, launch to first local step (first launch, creating the MLflow store: "
         f"{details['startup']['first_launch_startup_seconds']:.2f} s)"),
        ("peak_rss_mb", f"{summary['peak_rss_mb']:.0f}", details["startup"]["rss_source"]),
        ("scaling (clients)", ", ".join(f"{k}: {s:.2f} s" for k, s in by_clients.items()),
         "; ".join(f"{key} = {value:.2f}" for key, value in scaling.items() if "_over_" in key)),
        ("scaling (data)", ", ".join(f"{float(f):.0%}: {s:.2f} s" for f, s in by_fraction.items()), "10 clients, E=1"),
        ("fedakd_overhead", f"{ratios.get('fedakd', float('nan')):.2f}x",
         "over fedavg per round: " + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
         + "; per round " + ", ".join(f"{k} {s:.2f} s" for k, s in overhead["seconds_per_round"].items())),
        ("pipeline_seconds", "-" if summary["pipeline_seconds"] is None else f"{summary['pipeline_seconds']:.0f}",
         "with --pipeline only"),
    ]
    header = (f"{m['cpu_model']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
              f"Python {m['python']}{' [--quick]' if summary['quick'] else ''}")
    return header + "\n" + tabulate(rows, headers=("measure", "value", "detail"))
