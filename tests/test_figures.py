"""Every figure type drawn for a study of 21 methods (tests/synthetic_study.py): each method keeps one look
(colour, line style, marker or hatch) that no other method in the same legend shares, the same in every
figure and in a study with another method list; no text leaves the canvas; no legend lies on an axes' data
area."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.colors import to_hex

from fedakd.reporting import collect, figures, tables
from tests import synthetic_study

KINDS = ("learning_curves", "per_class_recall", "accuracy_vs_bytes", "minority_vs_imbalance", "forest",
         "verdict_overview", "critical_difference", "steps", "partition")


def _draw(monkeypatch, call) -> dict[str, object]:
    """The figures ``call()`` makes, by file stem, laid out as when saved but never written."""
    drawn = {}

    def keep(fig, png_path):
        fig.draw_without_rendering()
        drawn[Path(png_path).stem] = fig
        return [Path(png_path), Path(png_path).with_suffix(".pdf")]

    monkeypatch.setattr(figures, "_save", keep)
    call()
    return drawn


@pytest.fixture(scope="module")
def drawn():
    runs, study = synthetic_study.runs(), synthetic_study.study()
    frame = collect.runs_frame(runs, study.final_window, study.target)
    built = tables.build_tables(frame, study)
    with pytest.MonkeyPatch.context() as monkeypatch:
        found = _draw(monkeypatch, lambda: figures.make_figures(runs, synthetic_study.manifests(), "unused",
                                                                comparison=built["comparison"], study=study))
    return found


def _style(handle) -> tuple:
    """What tells an axes' labelled artist apart: a line's (or an errorbar's line's) colour, style and marker; a
    bar's colour and hatch."""
    if isinstance(handle, ErrorbarContainer):
        handle = handle.lines[0]
    if isinstance(handle, BarContainer):
        handle = handle.patches[0]
    if isinstance(handle, Line2D):
        return to_hex(handle.get_color()), handle.get_linestyle(), handle.get_marker()
    assert isinstance(handle, Patch), handle
    return to_hex(handle.get_facecolor()), handle.get_hatch() or ""


def _legends(fig) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def _method_entries(fig, methods) -> list[list[tuple[str, tuple]]]:
    """Per axes, (method, look) of each labelled artist: the entries a legend of that axes shows."""
    return [[(label, _style(handle)) for handle, label in zip(*ax.get_legend_handles_labels()) if label in methods]
            for ax in fig.axes]


def test_every_figure_type_is_drawn_for_21_methods(drawn):
    assert len(synthetic_study.config()["methods"]) == 21
    assert {kind for kind in KINDS if any(stem.startswith(kind + "_") for stem in drawn)} == set(KINDS)


def test_methods_in_one_legend_never_share_a_look_and_keep_it_in_every_figure(drawn):
    methods = set(synthetic_study.config()["methods"])
    seen: dict[str, set] = defaultdict(set)
    panels = 0
    for stem, fig in drawn.items():
        for entries in _method_entries(fig, methods):
            panels += bool(entries)
            assert len({style for _, style in entries}) == len(entries), (stem, entries)
            for name, style in entries:
                seen[name].add(style[0])  # the colour: bars and lines of one method share it
    assert panels >= 20 and set(seen) == methods
    # the critical-difference diagram names each method in its colour
    named = 0
    for text in drawn["critical_difference_fashion-mnist"].axes[0].texts:
        name = text.get_text().split(" (")[0].split(") ")[-1]
        if name in methods:
            seen[name].add(to_hex(text.get_color()))
            named += 1
    assert named == len(methods) - 1  # centralised, a reference, has no rank
    assert {name: colours for name, colours in seen.items() if len(colours) > 1} == {}


def test_no_text_leaves_the_canvas(drawn):
    for stem, fig in drawn.items():
        width, height = fig.get_size_inches()
        tight = fig.get_tightbbox()
        assert tight.x0 >= -0.01 and tight.y0 >= -0.01, stem
        assert tight.x1 <= width + 0.01 and tight.y1 <= height + 0.01, (stem, tight, (width, height))


def _overlap(a, b) -> float:
    return min(min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0))


def test_no_legend_lies_on_data_or_on_a_title(drawn):
    for stem, fig in drawn.items():
        titles = [text for text in (fig._suptitle, fig._supxlabel, *(ax.title for ax in fig.axes),
                                    *(ax.xaxis.label for ax in fig.axes)) if text is not None and text.get_text()]
        for legend in _legends(fig):
            box = legend.get_window_extent()
            for ax in fig.axes:
                assert _overlap(box, ax.get_window_extent()) <= 1, \
                    f"{stem}: a legend lies on the data of {ax.get_title()!r}"
            for text in titles:
                assert _overlap(box, text.get_window_extent()) <= 1, f"{stem}: a legend covers {text.get_text()!r}"


def test_many_methods_are_split_into_panels_of_at_most_eight(drawn):
    from fedakd.reporting.looks import PANEL_LINES

    curves = drawn["learning_curves_fashion-mnist_lt100-dir0.5"]
    titles = [ax.get_title() for ax in curves.axes]
    assert any("the ablation ladder" in t for t in titles) and any("rivals" in t for t in titles)
    for ax in curves.axes:
        labelled = {line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")}
        assert 0 < len(labelled) <= PANEL_LINES, (ax.get_title(), labelled)


def test_failed_runs_are_thin_lines_not_part_of_the_band(drawn):
    # fedakd seed 1 collapses to 0.1 from round 6 on lt100-dir0.5 (synthetic_study.FAILURES): its own thin line,
    # while the mean curve of its 4 healthy seeds stays above 0.6 at the last round
    ax = drawn["learning_curves_fashion-mnist_lt100-dir0.5"].axes[0]
    black = [line for line in ax.get_lines() if to_hex(line.get_color()) == "#000000"]
    mean = next(line for line in black if line.get_label() == "fedakd")
    thin = [line for line in black if line.get_label().startswith("_") and line.get_linewidth() < 1]
    assert mean.get_ydata()[-1] > 0.6 and len(thin) == 1 and thin[0].get_ydata()[-1] == pytest.approx(0.1)


def test_a_methods_look_is_the_same_in_a_study_with_other_methods(drawn, monkeypatch):
    runs = [run for run in synthetic_study.runs() if run["job"]["method"] in ("fedakd-res", "fedavg-smote", "creff")
            and run["job"]["setting"] == "lt10-dir0.5"]
    small = _draw(monkeypatch, lambda: figures.learning_curves(runs, "unused"))
    methods = {"fedakd-res", "fedavg-smote", "creff"}
    big = dict(entry for entries in _method_entries(drawn["learning_curves_fashion-mnist_lt10-dir0.5"], methods)
               for entry in entries)
    assert dict(entry for entries in _method_entries(small["learning_curves_fashion-mnist_lt10-dir0.5"], methods)
                for entry in entries) == big
    assert len(big) == 3


def test_the_band_is_the_bootstrap_interval_of_the_mean_over_seeds():
    # two seeds: a quarter of the resamples pick the first twice (mean = its value), a quarter the second twice,
    # so the 2.5th and 97.5th percentiles are the two seeds' own values; one seed: no band
    mean, low, high = figures.mean_band([[0.0, 1.0], [2.0, 3.0]])
    assert list(mean) == [1.0, 2.0] and list(low) == [0.0, 1.0] and list(high) == [2.0, 3.0]
    mean, low, high = figures.mean_band([[0.5, 0.7]])
    assert list(mean) == list(low) == list(high) == [0.5, 0.7]
    # five seeds: inside the seeds' range and around the mean
    values = [[0.70], [0.72], [0.75], [0.78], [0.80]]
    mean, low, high = figures.mean_band(values)
    assert mean[0] == pytest.approx(0.75) and 0.70 <= low[0] < mean[0] < high[0] <= 0.80


def test_the_forest_marks_the_difference_without_failed_seeds_only_where_enough_pairs_remain(drawn):
    # lt100-dir0.5: fedakd seed 1 failed, so every one of its 19 comparisons lost a pair and keeps 4 (against
    # fedavg-ft, whose seed 2 failed too, 3): MIN_HEALTHY_PAIRS = 3, a hollow mark on each; lt10-dir0.5 lost none
    def hollow(stem):
        return [line for line in drawn[stem].axes[0].get_lines() if line.get_markerfacecolor() == "white"]

    assert len(hollow("forest_fashion-mnist_lt100-dir0.5")) == 19
    assert hollow("forest_fashion-mnist_lt10-dir0.5") == []
