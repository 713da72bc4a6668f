"""Figures of the benchmark, as 300 dpi PNG and PDF, readable in print.

Figures are built on ``matplotlib.figure.Figure`` directly (rendered by Agg for
PNG), never through pyplot, so no GUI backend or global figure state is involved.
Each method keeps one look in every figure of every study (fedakd.reporting.looks);
a figure with many methods is split into panels (the ladder, the focus method's
variants, the rivals). Curves and bars are the mean over the healthy runs with the
95 % bootstrap interval of that mean; a failed run is drawn on its own (a thin line,
an x). Legends sit beside the axes, never on the data.
"""

from __future__ import annotations

import json
import math
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


class Presentation:
    """How a study's figures show its methods: each method's look (fedakd.reporting.looks), the same in every
    figure of every study, and the panels a figure with many methods is split into."""

    def __init__(self, runs: list[dict[str, Any]], study=None):
        from fedakd.reporting.looks import DEFAULT_LADDER, method_looks

        methods = list(_by_method(runs))
        flagged = set(study.references) if study is not None else {
            run["job"]["method"] for run in runs if run.get("reference")}
        references = [m for m in methods if m in flagged] or ([] if study is not None else ["centralised"])
        self.focus = study.focus if study is not None else "fedakd"
        self.baseline = study.baseline if study is not None else "fedavg"
        self.ladder = study.ladder if study is not None else DEFAULT_LADDER
        self.references = references
        self.classes = {run["job"]["method"]: run["job"].get("method_class", run["job"]["method"]) for run in runs}
        self.looks = method_looks(methods, focus=self.focus, references=references)

    def panels(self, methods) -> list[tuple[str, list[str]]]:
        from fedakd.reporting.looks import method_panels

        return method_panels(methods, focus=self.focus, baseline=self.baseline, ladder=self.ladder,
                             references=self.references, classes=self.classes)


def _presentation(runs: list[dict[str, Any]], presentation: "Presentation | None") -> "Presentation":
    return presentation if presentation is not None else Presentation(runs)


def _healthy(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs that neither collapsed nor diverged, the failed ones): a failed run is drawn on its own, thin."""
    from fedakd.diagnostics import failed

    split: tuple[list, list] = ([], [])
    for run in runs:
        split[failed(run.get("failure"))].append(run)
    return split


def _series(runs: list[dict[str, Any]], x_of: Callable[[dict], float],
            y_of: Callable[[dict], float | None]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): (runs x rounds) matrices of x_of and y_of(history record) at the rounds where every run has a y."""
    by_run = [{record["round"]: record for record in run["history"]} for run in runs]
    rounds = sorted(set.intersection(*({r for r, record in records.items() if y_of(record) is not None}
                                       for records in by_run)) if by_run else set())
    return tuple(np.asarray([[float(value_of(records[r])) for r in rounds] for records in by_run])
                 for value_of in (x_of, y_of))


def mean_band(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean over the rows (seeds) of ``matrix`` at each column (round or class), with the 95 % percentile
    bootstrap interval of that mean (fedakd.reporting.stats.bootstrap_interval); with one row the band is the
    mean itself."""
    from fedakd.reporting.stats import bootstrap_interval

    matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
    mean = matrix.mean(axis=0)
    if matrix.shape[0] < 2:
        return mean, mean, mean
    low, high = bootstrap_interval(matrix)
    return mean, low, high


def _failed_handle(failed_any: bool) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="#555555", linewidth=0.7, label="a failed run (thin, one line each)")] \
        if failed_any else []


def _curve(ax, x_of, y_of, runs, look, label) -> bool:
    """A method's mean curve over its healthy runs with the 95 % bootstrap band, and each failed run as a thin
    line of its own; True when one of the runs failed."""
    healthy, failed_runs = _healthy(runs)
    if healthy:
        xs, ys = _series(healthy, x_of, y_of)
        if ys.size:
            mean, low, high = mean_band(ys)
            x = xs.mean(axis=0)
            ax.plot(x, mean, label=label, markersize=3.5, markevery=max(len(x) // 8, 1), **look.line())
            ax.fill_between(x, low, high, color=look.color, alpha=0.15, linewidth=0)
    else:  # every seed failed: the legend still names the method
        ax.plot([], [], label=label, **look.line())
    for run in failed_runs:
        xs, ys = _series([run], x_of, y_of)
        if ys.size:
            ax.plot(xs[0], ys[0], color=look.color, linestyle=look.linestyle, linewidth=0.7, alpha=0.8, zorder=1.5)
    return bool(failed_runs)


def _spread_note(runs: list[dict[str, Any]], bars: bool = False) -> str:
    """What a curve's band (or a bar's whisker) and a failed run's mark mean, with the number of seeds."""
    seeds = {run["job"]["seed"] for run in runs}
    return (f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}: mean of the healthy runs, "
            f"{'bars' if bars else 'band'} = 95 % bootstrap interval of that mean; "
            f"{'x: a failed run' if bars else 'thin lines: failed runs'}")


def _legend_right(ax, handles=None, title: str | None = "method") -> None:
    """The legend beside the axes, outside the data."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, title=title, fontsize="small", title_fontsize="small", loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def learning_curves(runs: list[dict[str, Any]], out_dir: str | Path,
                    presentation: Presentation | None = None) -> list[Path]:
    """Balanced accuracy and minority recall against the round, per dataset/setting, one row of panels per
    group of methods: is a gain there all along, and had the curves flattened by the last round?"""
    from matplotlib.ticker import MaxNLocator

    shown, written = _presentation(runs, presentation), []
    metrics = (("balanced_accuracy", "balanced accuracy"), ("minority_recall", "minority-class recall"))
    for (dataset, setting), setting_runs in _by_setting(runs).items():
        by_method = _by_method(setting_runs)
        panels = shown.panels(by_method)
        fig = _new_figure(11, 3.4 * len(panels) + 0.6)
        grid = np.atleast_2d(fig.subplots(len(panels), 2, squeeze=False))
        for row, (title, methods) in zip(grid, panels):
            failed_any = False
            for ax, (key, label) in zip(row, metrics):
                for method in methods:
                    failed_any |= _curve(ax, lambda record: record["round"], lambda record, key=key: record.get(key),
                                         by_method[method], shown.looks[method], method)
                if not ax.lines:
                    ax.text(0.5, 0.5, "no minority classes\n(balanced pool)", ha="center", va="center",
                            transform=ax.transAxes)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("communication round")
                ax.set_ylabel(f"{label} (fraction)")
                ax.set_title(f"{label}{': ' + title if title else ''}", fontsize="medium")
                ax.grid(alpha=0.3)
            _legend_right(row[-1], [*row[0].get_legend_handles_labels()[0], *_failed_handle(failed_any)])
        fig.suptitle(f"{dataset}, {setting}\n{_spread_note(setting_runs)}", fontsize="medium")
        written += _save(fig, Path(out_dir) / f"learning_curves_{_safe(dataset)}_{_safe(setting)}.png")
    return written


def accuracy_vs_bytes(runs: list[dict[str, Any]], out_dir: str | Path,
                      presentation: Presentation | None = None) -> list[Path]:
    """Test accuracy against cumulative bytes communicated (down + up): what each point of accuracy costs."""
    shown, written = _presentation(runs, presentation), []
    for (dataset, setting), setting_runs in _by_setting(runs).items():
        by_method = _by_method(setting_runs)
        panels = shown.panels(by_method)
        fig = _new_figure(8.5, 3.4 * len(panels) + 0.6)
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (title, methods) in zip(axes, panels):
            failed_any = False
            for method in methods:
                failed_any |= _curve(ax, lambda record: (record["bytes_down"] + record["bytes_up"]) / 1e6,
                                     lambda record: record.get("accuracy"), by_method[method], shown.looks[method],
                                     method)
            ax.set_xlabel("cumulative communication, down + up (MB, 10^6 bytes)")
            ax.set_ylabel("test accuracy (fraction)")
            if title:
                ax.set_title(title, fontsize="medium")
            ax.grid(alpha=0.3)
            _legend_right(ax, [*ax.get_legend_handles_labels()[0], *_failed_handle(failed_any)])
        fig.suptitle(f"{dataset}, {setting}: accuracy against communication\n{_spread_note(setting_runs)}",
                     fontsize="medium")
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


def per_class_recall(runs: list[dict[str, Any]], out_dir: str | Path,
                     presentation: Presentation | None = None) -> list[Path]:
    """Final per-class recall, grouped bars per class (one row of panels per group of methods), head/medium/tail
    shaded: where does each method lose? A bar is the mean over the healthy runs with its 95 % bootstrap
    interval; a failed run's recalls are marked x."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown, written = _presentation(runs, presentation), []
    for (dataset, setting), setting_runs in _by_setting(runs).items():
        x_label, orders, groups = _class_layout(setting_runs)
        order_of = {id(run): order for run, order in zip(setting_runs, orders)}
        num_classes = setting_runs[0]["num_classes"]
        by_method = _by_method(setting_runs)
        panels = shown.panels(by_method)
        most = max(len(methods) for _, methods in panels)
        fig = _new_figure(min(max(7.5, 0.16 * num_classes * most + 3), 30), 3.2 * len(panels) + 0.8)
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        positions = np.arange(num_classes)
        for ax, (title, methods) in zip(axes, panels):
            shade_handles = []
            for name, shade in GROUP_SHADES.items():
                for position in groups.get(name, []):
                    ax.axvspan(position - 0.5, position + 0.5, color=shade, zorder=0, linewidth=0)
                if groups.get(name):
                    shade_handles.append(Patch(facecolor=shade, edgecolor="#999999", label=f"{name} classes"))
            width, failed_any = 0.8 / len(methods), False
            for i, method in enumerate(methods):
                look, x = shown.looks[method], positions - 0.4 + width * (i + 0.5)
                healthy, failed_runs = _healthy(by_method[method])
                recall = lambda run: np.asarray(run["final"]["per_class_recall"])[order_of[id(run)]]  # noqa: E731
                if healthy:
                    mean, low, high = mean_band([recall(run) for run in healthy])
                    ax.bar(x, mean, width, yerr=np.vstack([mean - low, high - mean]), color=look.color,
                           hatch=look.hatch, edgecolor="white", linewidth=0, label=method, capsize=1.5,
                           error_kw={"linewidth": 0.7}, zorder=2)
                else:
                    ax.bar(x, np.zeros(num_classes), width, color=look.color, label=method)
                for run in failed_runs:
                    failed_any = True
                    ax.plot(x, recall(run), "x", color=look.color, markersize=4, markeredgecolor="#333333",
                            zorder=3)
            ax.set_xticks(positions)
            ax.set_xlim(-0.5, num_classes - 0.5)
            ax.set_ylim(0, 1.05)
            ax.set_xlabel(x_label)
            ax.set_ylabel("final test recall")
            if title:
                ax.set_title(title, fontsize="medium")
            failed_mark = [Line2D([], [], marker="x", linestyle="", color="#333333", label="a failed run")] \
                if failed_any else []
            _legend_right(ax, [*ax.get_legend_handles_labels()[0], *shade_handles, *failed_mark])
        fig.suptitle(f"{dataset}, {setting}: final per-class recall\n{_spread_note(setting_runs, bars=True)}",
                     fontsize="medium")
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
                          presentation: Presentation | None = None) -> list[Path]:
    """Final minority recall against the imbalance factor, one line per method and split, per dataset (one
    panel per group of methods): the mean over the healthy runs with its 95 % bootstrap interval, x a failed run.

    Settings without minority classes (balanced pools) have no point to plot; a
    dataset with none at all gets no figure.
    """
    from fedakd.diagnostics import failed

    shown, written = _presentation(runs, presentation), []
    datasets: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["final"].get("minority_recall") is not None:
            datasets.setdefault(run["job"]["dataset"], []).append(run)
    for dataset, dataset_runs in datasets.items():
        kinds = {run["setting"]["imbalance"]["kind"] for run in dataset_runs}
        lines: dict[tuple[str, str], dict[float, list[tuple[float, bool]]]] = {}
        split_styles: dict[str, str] = {}
        for run in dataset_runs:
            fixed = {"imbalance": {k: v for k, v in run["setting"]["imbalance"].items() if k != "factor"},
                     "split": run["setting"]["split"]}
            key = (run["job"]["method"], json.dumps(fixed, sort_keys=True))
            factor = float(run["setting"]["imbalance"]["factor"])
            lines.setdefault(key, {}).setdefault(factor, []).append(
                (float(run["final"]["minority_recall"]), failed(run.get("failure"))))
            split_styles.setdefault(key[1], LINE_STYLES[len(split_styles) % len(LINE_STYLES)])
        panels = shown.panels(_by_method(dataset_runs))
        fig = _new_figure(8.5, 3.2 * len(panels) + 0.8)
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (title, methods) in zip(axes, panels):
            for (method, fixed_json), points in lines.items():
                if method not in methods:
                    continue
                if len(split_styles) > 1:  # the line style tells the splits apart; the colour and marker the method
                    style, label = {**shown.looks[method].line(), "linestyle": split_styles[fixed_json]}, \
                        _line_label(method, json.loads(fixed_json), kinds)
                else:
                    style, label = shown.looks[method].line(), method
                _factor_line(ax, points, style, label)
            ax.set_xscale("log")
            ax.set_xlabel("imbalance factor (largest / smallest class size, log scale)")
            ax.set_ylabel("final minority-class recall")
            if title:
                ax.set_title(title, fontsize="medium")
            ax.grid(alpha=0.3, which="both")
            _legend_right(ax, title=None)
        only = "" if len(split_styles) > 1 else ", " + _line_label("", json.loads(next(iter(split_styles))),
                                                                   kinds).lstrip(", ")
        fig.suptitle(f"{dataset}{only}: final minority recall vs imbalance\n{_spread_note(dataset_runs, bars=True)}",
                     fontsize="medium")
        written += _save(fig, Path(out_dir) / f"minority_vs_imbalance_{_safe(dataset)}.png")
    return written


def _factor_line(ax, points: dict[float, list[tuple[float, bool]]], style: dict, label: str) -> None:
    """One line of minority recall against the imbalance factor: at each factor the mean over the healthy runs
    with its 95 % bootstrap interval, and each failed run's value as an x."""
    from fedakd.reporting.stats import bootstrap_interval

    factors = sorted(points)
    healthy = [[v for v, bad in points[f] if not bad] or [math.nan] for f in factors]
    mean = np.asarray([np.mean(v) for v in healthy])
    bounds = np.asarray([bootstrap_interval(v) for v in healthy])  # NaN (no bar) below 2 healthy runs
    error = np.nan_to_num(np.vstack([mean - bounds[:, 0], bounds[:, 1] - mean]))
    ax.errorbar(factors, mean, yerr=error, **style, markersize=4, capsize=3, label=label)
    for f in factors:
        bad = [v for v, is_bad in points[f] if is_bad]
        ax.plot([f] * len(bad), bad, "x", color=style["color"], markersize=5)


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


def _forest_axis(ax, block, healthy_marks: bool) -> bool:
    """One forest: a row per rival, the paired mean difference with its 95 % bootstrap interval coloured by the
    adjusted verdict and, where at least MIN_HEALTHY_PAIRS pairs had no failed run and some had, the mean over
    those as a hollow mark; True when a hollow mark was drawn."""
    from fedakd.reporting.stats import MIN_HEALTHY_PAIRS

    ys, hollow = np.arange(len(block))[::-1], False
    for y, (_, row) in zip(ys, block.iterrows()):
        colour = VERDICT_COLOURS.get(row["verdict"], "#BBBBBB")
        if not np.isnan(row["ci_low"]):
            ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=colour, linewidth=2.5, solid_capstyle="butt")
        ax.plot([row["mean_diff"]], [y], "o", color=colour, markersize=6)
        some_failed = row["method_failed"] > 0 or row["baseline_failed"] > 0
        if healthy_marks and some_failed and row["n_pairs_without_failed"] >= MIN_HEALTHY_PAIRS:
            ax.plot([row["mean_diff_without_failed"]], [y], "o", markerfacecolor="white", markeredgecolor=colour,
                    markersize=6, markeredgewidth=1.5, zorder=3)
            hollow = True
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_ylim(-0.7, len(block) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    return hollow


def _verdict_handles(verdicts, hollow: bool) -> list:
    from matplotlib.lines import Line2D
    from fedakd.reporting.stats import MIN_HEALTHY_PAIRS

    handles = [Line2D([], [], color=VERDICT_COLOURS[v], linewidth=2.5, marker="o", label=v)
               for v in ("win", "tie", "loss", "untested") if v in set(verdicts)]
    if hollow:
        handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="white", markeredgecolor="#555555",
                              label=f"without the failed seeds (≥ {MIN_HEALTHY_PAIRS} pairs left)"))
    return handles


def forest_plots(comparison, focus: str | None, out_dir: str | Path) -> list[Path]:
    """Per dataset and setting: the focus method's paired difference from each rival on the primary metric,
    with its 95 % bootstrap interval, coloured by the adjusted verdict (win / tie / loss); where seeds failed,
    the difference without them (hollow) when enough pairs remain."""
    if focus is None or comparison is None or not len(comparison):
        return []
    rows = comparison[(comparison["method"] == focus) & (comparison["family"] == "primary")]
    written = []
    for (dataset, setting), block in rows.groupby(["dataset", "setting"], sort=False):
        block = block.reset_index(drop=True)
        fig = _new_figure(6.4, 0.3 * len(block) + 2.2)
        ax = fig.subplots()
        hollow = _forest_axis(ax, block, healthy_marks=True)
        ax.set_yticks(np.arange(len(block))[::-1], [f"vs {b}" for b in block["baseline"]])
        metric = block["metric"].iloc[0].replace("_", " ")
        ax.set_xlabel(f"{focus} − rival, {metric}\n(paired mean over seeds, 95 % bootstrap interval)")
        ax.set_title(f"{dataset} / {setting}\n{focus} against each rival, {int(block['n_pairs'].max())} seeds; "
                     "verdict by Holm-adjusted t-test", fontsize="medium")
        fig.legend(handles=_verdict_handles(block["verdict"], hollow), fontsize="small", loc="outside lower center",
                   ncols=3)
        written += _save(fig, Path(out_dir) / f"forest_{_safe(dataset)}_{_safe(setting)}.png")
    return written


def verdict_overview(comparison, study, out_dir: str | Path) -> list[Path]:
    """The report's first figure, per dataset: the focus method against each rival on the primary metric, one
    panel per setting side by side (rivals on a shared axis), coloured by the adjusted verdict."""
    if study is None or study.focus is None or comparison is None or not len(comparison):
        return []
    rows = comparison[(comparison["method"] == study.focus) & (comparison["family"] == "primary")]
    written = []
    for dataset, dataset_rows in rows.groupby("dataset", sort=False):
        rivals = list(dict.fromkeys(dataset_rows["baseline"]))
        blocks = list(dataset_rows.groupby("setting", sort=False))
        fig = _new_figure(min(2.6 * len(blocks) + 2.0, 30), 0.3 * len(rivals) + 2.3)
        axes = fig.subplots(1, len(blocks), sharey=True, squeeze=False)[0]
        hollow = False
        for ax, (setting, block) in zip(axes, blocks):
            block = block.set_index("baseline").reindex(rivals).reset_index()
            block = block.fillna({"verdict": "untested", "method_failed": 0, "baseline_failed": 0,
                                  "n_pairs_without_failed": 0, "n_pairs": 0})
            hollow |= _forest_axis(ax, block, healthy_marks=True)
            ax.set_title(f"{setting}\n({int(block['n_pairs'].max())} seeds)", fontsize="small")
            ax.set_xlabel(f"{study.focus} − rival", fontsize="small")
            ax.tick_params(axis="x", labelsize="small")
        axes[0].set_yticks(np.arange(len(rivals))[::-1], [f"vs {r}" for r in rivals])
        fig.suptitle(f"{dataset}: {study.focus} against each rival in every setting, "
                     f"{study.primary.replace('_', ' ')}\n(paired mean difference over seeds, 95 % bootstrap "
                     "interval; verdict by Holm-adjusted t-test)", fontsize="medium")
        fig.legend(handles=_verdict_handles(dataset_rows["verdict"], hollow), fontsize="small",
                   loc="outside lower center", ncols=3)
        written += _save(fig, Path(out_dir) / f"verdict_overview_{_safe(dataset)}.png")
    return written


def critical_difference(frame, metric: str, out_dir: str | Path, alpha: float,
                        presentation: Presentation) -> list[Path]:
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
        looks = presentation.looks
        fig = _new_figure(7.5, 0.28 * table.shape[1] + 1.8)
        ax = fig.subplots()
        sp.critical_difference_diagram(ranks, nemenyi, alpha=alpha, ax=ax,
                                       color_palette={m: looks[m].color for m in table.columns},
                                       label_props={"fontsize": "small"})
        ax.set_title(f"{dataset}: mean rank on {metric.replace('_', ' ')} over N = {table.shape[0]} blocks "
                     f"(settings x seeds), Friedman p = {friedman:.3g};\nbars join methods that Nemenyi's test "
                     f"cannot tell apart at {alpha}", fontsize=7)
        written += _save(fig, Path(out_dir) / f"critical_difference_{_safe(dataset)}.png")
    return written


def step_sensitivity(frame, study, out_dir: str | Path, presentation: Presentation) -> list[Path]:
    """Per dataset and step family: each method's primary metric (final-window mean over seeds, 95 % bootstrap
    interval) against the effective client step lr / (1 - momentum), one line per method (one panel per group
    of methods), every failed run (collapsed or diverged) marked with an x at its value."""
    from fedakd.reporting.steps import step_points

    points = step_points(frame, study, study.primary)
    written = []
    for (dataset, family) in dict.fromkeys((p["dataset"], p["family"]) for p in points):
        mine = [p for p in points if p["dataset"] == dataset and p["family"] == family]
        methods = list(dict.fromkeys(p["method"] for p in mine))
        looks, panels = presentation.looks, presentation.panels(methods)
        fig = _new_figure(7.4, 3.2 * len(panels) + 0.8)
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (title, group) in zip(axes, panels):
            offsets = dict(zip(group, np.linspace(-0.04, 0.04, len(group))))  # side by side, in log space
            for method in group:
                line = sorted((p for p in mine if p["method"] == method), key=lambda p: p["step"])
                steps = np.array([p["step"] for p in line]) * np.exp(offsets[method])
                means = np.array([p["mean"] for p in line])
                err = np.vstack([np.nan_to_num(means - [p["ci_low"] for p in line]),
                                 np.nan_to_num(np.array([p["ci_high"] for p in line]) - means)])
                ax.errorbar(steps, means, yerr=err, markersize=4, capsize=3, label=method, **looks[method].line())
                for step, p in zip(steps, line):
                    if p["failed_values"]:
                        ax.plot([step] * len(p["failed_values"]), p["failed_values"], "x",
                                color=looks[method].color, markersize=6)
            ax.set_xscale("log")
            ticks = sorted({p["step"] for p in mine})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("effective client step lr / (1 − momentum)")
            ax.set_ylabel(f"{study.primary.replace('_', ' ')}")
            if title:
                ax.set_title(title, fontsize="medium")
            ax.grid(alpha=0.3)
            _legend_right(ax)
        fig.suptitle(f"{dataset} / {family}: the verdict across step sizes\n(final-window mean over seeds, 95 % "
                     "bootstrap interval; x: a failed run)", fontsize="medium")
        written += _save(fig, Path(out_dir) / f"steps_{_safe(dataset)}_{_safe(family)}.png")
    return written


def make_figures(runs: list[dict[str, Any]], manifests: list[dict[str, Any]], out_dir: str | Path,
                 tuning: list[dict[str, Any]] = (), comparison=None, study=None) -> list[Path]:
    """Every figure of the report; partition heatmaps are named after the setting whose runs share their hash.
    With the comparison table and the study, also the verdict overview, the forest plots and the
    critical-difference diagrams."""
    from fedakd.reporting.steps import is_base

    out_dir = Path(out_dir)
    shown = Presentation(runs, study)
    base_runs = runs if study is None else [run for run in runs if is_base(study, run["job"]["setting"])]
    written = [*learning_curves(runs, out_dir, shown), *per_class_recall(runs, out_dir, shown),
               *minority_vs_imbalance(base_runs, out_dir, shown), *accuracy_vs_bytes(runs, out_dir, shown),
               *tuning_sensitivity(list(tuning), out_dir)]
    if study is not None:
        from fedakd.reporting.collect import runs_frame

        competitors = [run for run in runs if run["job"]["method"] not in set(study.references)]
        pools = [run for run in competitors if is_base(study, run["job"]["setting"])]  # each pool once
        written += [*verdict_overview(comparison, study, out_dir), *forest_plots(comparison, study.focus, out_dir),
                    *critical_difference(runs_frame(pools, study.final_window), study.primary, out_dir,
                                         study.alpha, shown),
                    *step_sensitivity(runs_frame(competitors, study.final_window), study, out_dir, shown)]
    setting_of = {}  # a partition is named after the first setting trained on it (a step setting shares its base's)
    for run in [*base_runs, *runs]:
        setting_of.setdefault(run["partition_sha256"], run["job"]["setting"])
    for manifest in manifests:
        setting = setting_of.get(manifest["sha256"], manifest["sha256"][:12])
        png = out_dir / f"partition_{_safe(manifest['dataset'])}_{_safe(setting)}_seed{manifest['seed']}.png"
        written += [partition_heatmap(manifest, png), png.with_suffix(".pdf")]
    return written
