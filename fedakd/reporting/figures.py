"""Figures of the benchmark, as 300 dpi PNG and PDF, readable in print.

Figures are built on ``matplotlib.figure.Figure`` directly (rendered by Agg for
PNG), never through pyplot, so no GUI backend or global figure state is involved.
Colours are the Okabe-Ito colour-blind-safe palette, one colour per method in
every figure; splits differ by line style. Bands and error bars span the
minimum to the maximum over seeds (with 2-5 seeds a standard deviation says
little), around the mean.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedakd.io import atomic_path

LINE_STYLES = ("-", "--", ":", "-.")
#: Grey levels (tell apart in greyscale print) for the head/medium/tail background of per-class plots.
GROUP_SHADES = {"head": "#D9D9D9", "medium": "#EDEDED", "tail": "#FFFFFF"}
#: Above this many clients x classes, heatmap cells are too small to carry their count.
MAX_ANNOTATED_CELLS = 400
DPI = 300


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-") or "unnamed"


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, png_path: Path) -> list[Path]:
    """Write ``png_path`` and the PDF beside it, atomically; no dates in the files, so reruns are identical."""
    png_path = Path(png_path)
    pdf_path = png_path.with_suffix(".pdf")
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    with atomic_path(pdf_path) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    return [png_path, pdf_path]


def _by_setting(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["job"]["dataset"], run["job"]["setting"]), []).append(run)
    return grouped


def _by_method(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(run["job"]["method"], []).append(run)
    return grouped


def _looks(runs: list[dict[str, Any]], looks: dict | None) -> dict:
    """Each method's look (fedakd.reporting.looks): the same in every figure of every study."""
    from fedakd.reporting.looks import method_looks

    if looks is not None:
        return looks
    references = {run["job"]["method"] for run in runs if run.get("reference")}
    return method_looks(_by_method(runs), references=references or ("centralised",))


def _over_seeds(runs: list[dict[str, Any]], value_of: Callable[[dict], float | None]) -> tuple[np.ndarray, ...]:
    """Rounds and the mean, min and max over seeds of value_of(history record) at each round (None skipped)."""
    by_round: dict[int, list[float]] = {}
    for run in runs:
        for record in run["history"]:
            value = value_of(record)
            if value is not None:
                by_round.setdefault(record["round"], []).append(float(value))
    rounds = sorted(by_round)
    values = [np.asarray(by_round[r]) for r in rounds]
    return (np.asarray(rounds), np.asarray([v.mean() for v in values]), np.asarray([v.min() for v in values]),
            np.asarray([v.max() for v in values]))


def _seed_note(runs: list[dict[str, Any]], spread: str = "band") -> str:
    seeds = {run["job"]["seed"] for run in runs}
    return f"mean over {len(seeds)} seed{'s' if len(seeds) != 1 else ''}, {spread} = min-max"


def learning_curves(runs: list[dict[str, Any]], out_dir: str | Path, looks: dict | None = None) -> list[Path]:
    """Balanced accuracy and minority recall against the round, per dataset/setting: is a gain there all
    along, and had the curves flattened by the last round?"""
    from matplotlib.ticker import MaxNLocator

    looks, written = _looks(runs, looks), []
    panels = (("balanced_accuracy", "balanced accuracy"), ("minority_recall", "minority-class recall"))
    for (dataset, setting), setting_runs in _by_setting(runs).items():
        fig = _new_figure(11, max(4, 0.22 * len(_by_method(setting_runs)) + 1))
        axes = fig.subplots(1, 2)
        for ax, (key, label) in zip(axes, panels):
            for method, method_runs in _by_method(setting_runs).items():
                rounds, mean, low, high = _over_seeds(method_runs, lambda record: record.get(key))
                if len(rounds):
                    ax.plot(rounds, mean, label=method, markersize=3, **looks[method].line())
                    ax.fill_between(rounds, low, high, color=looks[method].color, alpha=0.2, linewidth=0)
            if not ax.lines:
                ax.text(0.5, 0.5, "no minority classes\n(balanced pool)", ha="center", va="center",
                        transform=ax.transAxes)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("communication round")
            ax.set_ylabel(f"{label} (fraction)")
            ax.set_title(label)
            ax.grid(alpha=0.3)
        fig.legend(*axes[0].get_legend_handles_labels(), title="method", loc="outside right upper",
                   fontsize="small")  # beside the axes: it covers no curve
        fig.suptitle(f"{dataset}, {setting}: {_seed_note(setting_runs)}")
        written += _save(fig, Path(out_dir) / f"learning_curves_{_safe(dataset)}_{_safe(setting)}.png")
    return written


def accuracy_vs_bytes(runs: list[dict[str, Any]], out_dir: str | Path, looks: dict | None = None) -> list[Path]:
    """Test accuracy against cumulative bytes communicated (down + up): what each point of accuracy costs."""
    looks, written = _looks(runs, looks), []
    for (dataset, setting), setting_runs in _by_setting(runs).items():
        fig = _new_figure(8, max(4.5, 0.22 * len(_by_method(setting_runs)) + 1))
        ax = fig.subplots()
        for method, method_runs in _by_method(setting_runs).items():
            _, mean, low, high = _over_seeds(method_runs, lambda record: record.get("accuracy"))
            _, megabytes, _, _ = _over_seeds(method_runs,
                                             lambda record: (record["bytes_down"] + record["bytes_up"]) / 1e6)
            ax.plot(megabytes, mean, label=method, markersize=3, **looks[method].line())
            ax.fill_between(megabytes, low, high, color=looks[method].color, alpha=0.2, linewidth=0)
        ax.set_xlabel("cumulative communication, down + up (MB, 10^6 bytes)")
        ax.set_ylabel("test accuracy (fraction)")
        ax.set_title(f"{dataset}, {setting}: {_seed_note(setting_runs)}")
        ax.grid(alpha=0.3)
        fig.legend(*ax.get_legend_handles_labels(), title="method", loc="outside right upper", fontsize="small")
        written += _save(fig, Path(out_dir) / f"accuracy_vs_bytes_{_safe(dataset)}_{_safe(setting)}.png")
    return written


def _class_layout(runs: list[dict[str, Any]]) -> tuple[str, list[np.ndarray], dict[str, list[int]]]:
    """How to line up classes across seeds: (x-axis label, per-run class order, groups by x position).

    When every seed has the same groups, x is the class id. With shuffle_classes the
    head/tail classes differ per seed, so x is the class's rank by training-pool size
    (largest first) and position i means "the i-th largest class" in every seed.
    """
    if len({json.dumps(run["groups"], sort_keys=True) for run in runs}) == 1:
        order = np.arange(runs[0]["num_classes"])
        return "class", [order] * len(runs), runs[0]["groups"]
    orders = [np.argsort(-np.asarray(run["class_counts"]), kind="stable") for run in runs]
    rank_of = np.argsort(orders[0], kind="stable")
    groups = {name: sorted(int(rank_of[c]) for c in classes) for name, classes in runs[0]["groups"].items()}
    return "class rank by training-pool size (largest first)", orders, groups


def per_class_recall(runs: list[dict[str, Any]], out_dir: str | Path, looks: dict | None = None) -> list[Path]:
    """Final per-class recall, grouped bars per class, head/medium/tail shaded: where does each method lose?"""
    from matplotlib.patches import Patch

    looks, written = _looks(runs, looks), []
    for (dataset, setting), setting_runs in _by_setting(runs).items():
        x_label, orders, groups = _class_layout(setting_runs)
        order_of = {id(run): order for run, order in zip(setting_runs, orders)}
        num_classes = setting_runs[0]["num_classes"]
        methods = _by_method(setting_runs)
        width = 0.8 / len(methods)
        fig = _new_figure(min(max(6.5, 0.18 * num_classes * len(methods) + 2), 30), 4.5)
        ax = fig.subplots()
        shade_handles = []
        for name, shade in GROUP_SHADES.items():
            for position in groups.get(name, []):
                ax.axvspan(position - 0.5, position + 0.5, color=shade, zorder=0, linewidth=0)
            if groups.get(name):
                shade_handles.append(Patch(facecolor=shade, edgecolor="#999999", label=f"{name} classes"))
        positions = np.arange(num_classes)
        for i, (method, method_runs) in enumerate(methods.items()):
            recalls = np.asarray([np.asarray(run["final"]["per_class_recall"])[order_of[id(run)]]
                                  for run in method_runs])
            mean = recalls.mean(axis=0)
            error = np.vstack([mean - recalls.min(axis=0), recalls.max(axis=0) - mean])
            ax.bar(positions - 0.4 + width * (i + 0.5), mean, width, yerr=error, color=looks[method].color,
                   hatch=looks[method].hatch, edgecolor="white", linewidth=0, label=method, capsize=2,
                   error_kw={"linewidth": 0.8}, zorder=2)
        ax.set_xticks(positions)
        ax.set_xlim(-0.5, num_classes - 0.5)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(x_label)
        ax.set_ylabel("final test recall (fraction)")
        fig.suptitle(f"{dataset}, {setting}: final per-class recall\n{_seed_note(setting_runs, 'bars')}")
        ax.legend(handles=[*ax.get_legend_handles_labels()[0], *shade_handles], fontsize="small",
                  loc="upper left", bbox_to_anchor=(1.01, 1))
        written += _save(fig, Path(out_dir) / f"per_class_recall_{_safe(dataset)}_{_safe(setting)}.png")
    return written


def _split_label(split: dict[str, Any]) -> str:
    kind = split["kind"]
    if kind in ("dirichlet", "quantity"):
        return f"{kind} α={split.get('alpha')}"
    if kind == "classes":
        return f"{kind} k={split.get('k')}"
    return kind


def _line_label(method: str, setting: dict[str, Any], kinds: set[str]) -> str:
    """method, split and (when the dataset has several) imbalance kind: what one line of the plot holds fixed."""
    imbalance = setting["imbalance"]
    parts = [method, _split_label(setting["split"])]
    if len(kinds) > 1:
        parts.append(imbalance["kind"])
    if imbalance["kind"] == "step":
        parts.append(f"μ={imbalance.get('minority_fraction', 0.5)}")
    return ", ".join(parts)


def minority_vs_imbalance(runs: list[dict[str, Any]], out_dir: str | Path,
                          looks: dict | None = None) -> list[Path]:
    """Final minority recall against the imbalance factor, one line per method and split, per dataset.

    Settings without minority classes (balanced pools) have no point to plot; a
    dataset with none at all gets no figure.
    """
    looks, written = _looks(runs, looks), []
    datasets: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["final"].get("minority_recall") is not None:
            datasets.setdefault(run["job"]["dataset"], []).append(run)
    for dataset, dataset_runs in datasets.items():
        kinds = {run["setting"]["imbalance"]["kind"] for run in dataset_runs}
        lines: dict[tuple[str, str], dict[float, list[float]]] = {}
        split_styles: dict[str, str] = {}
        for run in dataset_runs:
            fixed = {"imbalance": {k: v for k, v in run["setting"]["imbalance"].items() if k != "factor"},
                     "split": run["setting"]["split"]}
            key = (run["job"]["method"], json.dumps(fixed, sort_keys=True))
            factor = float(run["setting"]["imbalance"]["factor"])
            lines.setdefault(key, {}).setdefault(factor, []).append(float(run["final"]["minority_recall"]))
            split_styles.setdefault(key[1], LINE_STYLES[len(split_styles) % len(LINE_STYLES)])
        fig = _new_figure(7.5, 4.5)
        ax = fig.subplots()
        for (method, fixed_json), points in lines.items():
            factors = sorted(points)
            values = [np.asarray(points[f]) for f in factors]
            mean = np.asarray([v.mean() for v in values])
            error = np.vstack([mean - [v.min() for v in values], [v.max() for v in values] - mean])
            ax.errorbar(factors, mean, yerr=error, **{**looks[method].line(), "linestyle": split_styles[fixed_json]},
                        markersize=4, capsize=3, label=_line_label(method, json.loads(fixed_json), kinds))
        ax.set_xscale("log")
        ax.set_xlabel("imbalance factor (largest / smallest class size, log scale)")
        ax.set_ylabel("final minority-class recall (fraction)")
        fig.suptitle(f"{dataset}: final minority recall vs imbalance\n{_seed_note(dataset_runs, 'bars')}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
        written += _save(fig, Path(out_dir) / f"minority_vs_imbalance_{_safe(dataset)}.png")
    return written


def _describe_setting(params: dict[str, Any]) -> str:
    imbalance, split = params.get("imbalance", {}), params.get("split", {})
    if not imbalance and not split:
        return ""
    factor = f" IF={imbalance.get('factor')}" if imbalance.get("kind", "none") != "none" else ""
    return f"{imbalance.get('kind', '?')}{factor}, {_split_label(split) if split else '?'}"


def partition_heatmap(manifest: dict[str, Any], out_path: str | Path) -> Path:
    """Clients x classes example counts of one partition (the PNG at ``out_path``, a PDF beside it).

    Cells carry their count up to MAX_ANNOTATED_CELLS cells; beyond that the
    colour bar alone has to do.
    """
    counts = np.asarray(manifest["client_class_counts"])
    num_clients, num_classes = counts.shape
    sizes = manifest.get("client_sizes") or counts.sum(axis=1).tolist()
    fig = _new_figure(min(max(5.0, 0.45 * num_classes + 2.5), 30), min(max(3.0, 0.35 * num_clients + 1.8), 30))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="viridis", aspect="auto", interpolation="nearest")
    if counts.size <= MAX_ANNOTATED_CELLS:
        threshold = (counts.max() + counts.min()) / 2
        for (client, cls), value in np.ndenumerate(counts):
            ax.text(cls, client, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value < threshold else "black")
    ax.set_xticks(np.arange(num_classes))
    ax.set_yticks(np.arange(num_clients), [f"{k} (n={n})" for k, n in enumerate(sizes)])
    ax.set_xlabel("class")
    ax.set_ylabel("client (examples held)")
    setting = _describe_setting(manifest.get("params", {}))
    ax.set_title(f"{manifest.get('dataset', '?')} partition, seed {manifest.get('seed', '?')}"
                 + (f": {setting}" if setting else ""))
    fig.colorbar(image, ax=ax, label="training examples")
    _save(fig, Path(out_path))
    return Path(out_path)


def _sensitivity_axes(options: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The two options a grid varies (each over at least 2 values), or None when it does not vary exactly two."""
    varied = [name for name in options[0] if len({repr(o.get(name)) for o in options}) >= 2] if options else []
    return (varied[0], varied[1]) if len(varied) == 2 else None


def tuning_sensitivity(records: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Mean validation score over the candidates of a grid that varies two options (FedAKD's lambda x distill_lr,
    FedDF's temperature x distill_lr), one heatmap per tuned method and setting; the chosen cell is outlined."""
    written = []
    for record in records:
        options = [candidate["options"] for candidate in record["candidates"]]
        axes = _sensitivity_axes(options)
        if axes is None:
            continue
        rows = sorted({o[axes[0]] for o in options})
        columns = sorted({o[axes[1]] for o in options})
        grid = np.full((len(rows), len(columns)), np.nan)
        for candidate in record["candidates"]:
            o = candidate["options"]
            grid[rows.index(o[axes[0]]), columns.index(o[axes[1]])] = candidate["mean"]
        fig = _new_figure(5.5, 4.2)
        ax = fig.subplots()
        image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if value < np.nanmean(grid) else "black")
        chosen = record["chosen"]["options"]
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((columns.index(chosen[axes[1]]) - 0.5,
                                rows.index(chosen[axes[0]]) - 0.5), 1, 1, fill=False, linewidth=2.5,
                               edgecolor="#D55E00", label="chosen"))
        ax.set_xticks(range(len(columns)), [str(c) for c in columns])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_xlabel(axes[1])
        ax.set_ylabel(axes[0])
        metric = record["metric"].replace("val_", "validation ").replace("_", " ")
        ax.set_title(f"{record['method']} on {record['dataset']}, {record['setting']}:\n{metric}, mean over "
                     f"{len(record['seeds'])} tuning seed(s)", fontsize=9)
        fig.colorbar(image, ax=ax, label=metric)
        name = f"tuning_sensitivity_{_safe(record['method'])}_{_safe(record['dataset'])}_{_safe(record['setting'])}.png"
        written += _save(fig, Path(out_dir) / name)
    return written


VERDICT_COLOURS = {"win": "#009E73", "tie": "#7F7F7F", "loss": "#D55E00", "untested": "#BBBBBB"}


def forest_plots(comparison, focus: str | None, out_dir: str | Path) -> list[Path]:
    """Per dataset and setting: the focus method's paired difference from each rival on the primary metric,
    with its 95 % bootstrap interval, coloured by the adjusted verdict (win / tie / loss)."""
    from matplotlib.patches import Patch

    if focus is None or comparison is None or not len(comparison):
        return []
    rows = comparison[(comparison["method"] == focus) & (comparison["family"] == "primary")]
    written = []
    for (dataset, setting), block in rows.groupby(["dataset", "setting"], sort=False):
        block = block.reset_index(drop=True)
        fig = _new_figure(6.0, 0.45 * len(block) + 1.4)
        ax = fig.subplots()
        ys = np.arange(len(block))[::-1]
        for y, (_, row) in zip(ys, block.iterrows()):
            colour = VERDICT_COLOURS.get(row["verdict"], "#BBBBBB")
            if not np.isnan(row["ci_low"]):
                ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=colour, linewidth=2.5)
            ax.plot([row["mean_diff"]], [y], "o", color=colour, markersize=6)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [f"vs {b}" for b in block["baseline"]])
        metric = block["metric"].iloc[0].replace("_", " ")
        ax.set_xlabel(f"{focus} − rival, {metric}\n(paired mean over seeds, 95 % bootstrap interval)")
        ax.set_title(f"{dataset} / {setting}: {focus} against each rival ({int(block['n_pairs'].max())} seeds; "
                     f"Holm-adjusted t-test)", fontsize=8)
        present = [v for v in ("win", "tie", "loss", "untested") if v in set(block["verdict"])]
        ax.legend(handles=[Patch(color=VERDICT_COLOURS[v], label=v) for v in present], fontsize="small",
                  loc="best")
        ax.grid(axis="x", alpha=0.3)
        written += _save(fig, Path(out_dir) / f"forest_{_safe(dataset)}_{_safe(setting)}.png")
    return written


def critical_difference(frame, metric: str, out_dir: str | Path, alpha: float = 0.05) -> list[Path]:
    """Per dataset: every method's mean rank on ``metric`` over blocks = (setting, seed), the Friedman test and
    Nemenyi's post-hoc (scikit-posthocs) as a critical-difference diagram; methods joined by a bar are not
    distinguishable. Needs at least 3 methods and 2 complete blocks."""
    import scikit_posthocs as sp
    from scipy import stats

    written = []
    for dataset, block in frame.groupby("dataset", sort=False):
        table = block.pivot_table(index=["setting", "seed"], columns="method", values=metric).dropna()
        if table.shape[1] < 3 or table.shape[0] < 2:
            continue
        ranks = table.rank(axis=1, ascending=False).mean()
        nemenyi = sp.posthoc_nemenyi_friedman(table.to_numpy())
        nemenyi.index = nemenyi.columns = list(table.columns)
        friedman = stats.friedmanchisquare(*(table[c].to_numpy() for c in table.columns)).pvalue
        fig = _new_figure(7.0, 0.28 * table.shape[1] + 1.6)
        ax = fig.subplots()
        sp.critical_difference_diagram(ranks, nemenyi, alpha=alpha, ax=ax)
        ax.set_title(f"{dataset}: mean rank on {metric.replace('_', ' ')} over N = {table.shape[0]} blocks "
                     f"(settings x seeds), Friedman p = {friedman:.3g};\nbars join methods that Nemenyi's test "
                     f"cannot tell apart at {alpha}", fontsize=7)
        written += _save(fig, Path(out_dir) / f"critical_difference_{_safe(dataset)}.png")
    return written


def step_sensitivity(frame, study, out_dir: str | Path) -> list[Path]:
    """Per dataset and step family: each method's primary metric (final-window mean over seeds, 95 % bootstrap
    interval) against the effective client step lr / (1 - momentum), one line per method, every failed run
    (collapsed or diverged) marked with an x at its value."""
    from fedakd.reporting.looks import method_looks
    from fedakd.reporting.steps import step_points

    points = step_points(frame, study, study.primary)
    written = []
    for (dataset, family) in dict.fromkeys((p["dataset"], p["family"]) for p in points):
        mine = [p for p in points if p["dataset"] == dataset and p["family"] == family]
        methods = list(dict.fromkeys(p["method"] for p in mine))
        looks = method_looks(methods, focus=study.focus, references=study.references)
        fig = _new_figure(6.4, 4.0)
        ax = fig.subplots()
        offsets = dict(zip(methods, np.linspace(-0.04, 0.04, len(methods))))  # side by side, in log space
        for method in methods:
            line = sorted((p for p in mine if p["method"] == method), key=lambda p: p["step"])
            steps = np.array([p["step"] for p in line]) * np.exp(offsets[method])
            means = np.array([p["mean"] for p in line])
            low = np.array([p["ci_low"] for p in line])
            high = np.array([p["ci_high"] for p in line])
            err = np.vstack([np.nan_to_num(means - low), np.nan_to_num(high - means)])
            ax.errorbar(steps, means, yerr=err, markersize=4, capsize=3, label=method, **looks[method].line())
            for step, p in zip(steps, line):
                if p["failed_values"]:
                    ax.plot([step] * len(p["failed_values"]), p["failed_values"], "x", color=looks[method].color,
                            markersize=6)
        ax.set_xscale("log")
        ticks = sorted({p["step"] for p in mine})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("effective client step lr / (1 − momentum)")
        ax.set_ylabel(f"{study.primary.replace('_', ' ')} (final-window mean)")
        ax.set_title(f"{dataset} / {family}: the verdict across step sizes\n(mean over seeds, 95 % bootstrap "
                     "interval; x: a failed run)", fontsize=8)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        ax.grid(alpha=0.3)
        written += _save(fig, Path(out_dir) / f"steps_{_safe(dataset)}_{_safe(family)}.png")
    return written


def make_figures(runs: list[dict[str, Any]], manifests: list[dict[str, Any]], out_dir: str | Path,
                 tuning: list[dict[str, Any]] = (), comparison=None, study=None) -> list[Path]:
    """Every figure of the report; partition heatmaps are named after the setting whose runs share their hash.
    With the comparison table and the study, also the forest plots and the critical-difference diagrams."""
    from fedakd.reporting.looks import method_looks
    from fedakd.reporting.steps import is_base

    out_dir = Path(out_dir)
    looks = None if study is None else method_looks(_by_method(runs), focus=study.focus, references=study.references)
    base_runs = runs if study is None else [run for run in runs if is_base(study, run["job"]["setting"])]
    written = [*learning_curves(runs, out_dir, looks), *per_class_recall(runs, out_dir, looks),
               *minority_vs_imbalance(base_runs, out_dir, looks), *accuracy_vs_bytes(runs, out_dir, looks),
               *tuning_sensitivity(list(tuning), out_dir)]
    if study is not None:
        from fedakd.reporting.collect import runs_frame

        competitors = [run for run in runs if run["job"]["method"] not in set(study.references)]
        pools = [run for run in competitors if is_base(study, run["job"]["setting"])]  # each pool once
        written += [*forest_plots(comparison, study.focus, out_dir),
                    *critical_difference(runs_frame(pools, study.final_window), study.primary, out_dir,
                                         study.alpha),
                    *step_sensitivity(runs_frame(competitors, study.final_window), study, out_dir)]
    setting_of = {}  # a partition is named after the first setting trained on it (a step setting shares its base's)
    for run in [*base_runs, *runs]:
        setting_of.setdefault(run["partition_sha256"], run["job"]["setting"])
    for manifest in manifests:
        setting = setting_of.get(manifest["sha256"], manifest["sha256"][:12])
        png = out_dir / f"partition_{_safe(manifest['dataset'])}_{_safe(setting)}_seed{manifest['seed']}.png"
        written += [partition_heatmap(manifest, png), png.with_suffix(".pdf")]
    return written
