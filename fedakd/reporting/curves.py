"""Learning-curve summaries: the final-window mean (a run's headline figure), the late-round mean, the rounds
and bytes to reach a stated value, the rounds to reach a fraction of the final value, and whether a method had
stopped improving (docs/method-card.md §4-5).

The final window is the last ``final_window`` fraction of the rounds, the same rule as the convergence window
below: with 60 rounds and 0.1, rounds 55-60. Its mean is what a comparison compares, so that one round's dip
or spike (a run that falls from 0.79 to 0.16 in its last round) does not decide it; the final round stays
beside it in the tables.

The window is the last ``fraction`` of the rounds: rounds r > R - ceil(fraction * R) (the last 2 of 10).
A curve's rise over the window is measured from the round just before it to the last round, on a
least-squares line through those points (so one noisy round does not decide it). A method whose
rise exceeds the threshold had not converged: comparing it at the last round compares how fast the
methods learn, not where they end up. Convergence is judged per seed (``seed_converged``), and a
collapsed or diverged seed never counts as converged.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

WINDOW = 0.2  # fraction of the rounds
RISE_THRESHOLD = 0.01  # 1 point of balanced accuracy
REACH = 0.95  # fraction of the final value


def window_start(total_rounds: int, fraction: float = WINDOW) -> int:
    """The last round before the window: R - ceil(fraction * R)."""
    return total_rounds - math.ceil(fraction * total_rounds)


def curve(history: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, values) of ``key`` over a run's evaluated rounds, skipping rounds where it is undefined."""
    points = [(record["round"], record[key]) for record in history if record.get(key) is not None]
    rounds, values = zip(*points) if points else ((), ())
    return np.asarray(rounds, dtype=float), np.asarray(values, dtype=float)


def late_mean(rounds: np.ndarray, values: np.ndarray, total_rounds: int, fraction: float = WINDOW) -> float:
    """Mean of the values evaluated in the last ``fraction`` of the rounds."""
    late = values[rounds > window_start(total_rounds, fraction)]
    return float(late.mean()) if late.size else math.nan


def final_window_mean(rounds: np.ndarray, values: np.ndarray, total_rounds: int, fraction: float) -> float:
    """The mean over the evaluated rounds of the final window (``fraction`` 0: the last evaluated value); the last
    evaluated value when no round of the window was evaluated (eval_every longer than the window)."""
    if not values.size:
        return math.nan
    late = late_mean(rounds, values, total_rounds, fraction) if fraction > 0 else math.nan
    return float(values[-1]) if math.isnan(late) else late


def first_reaching(rounds: np.ndarray, values: np.ndarray, target: float) -> float:
    """The first evaluated round whose value is at least ``target``; NaN for a run that never reaches it."""
    reached = values >= target
    return float(rounds[np.argmax(reached)]) if reached.any() else math.nan


def rounds_to_reach(rounds: np.ndarray, values: np.ndarray, reach: float = REACH) -> float:
    """The first evaluated round whose value is at least ``reach`` times the final value."""
    if not values.size:
        return math.nan
    target = reach * values[-1]
    return float(rounds[np.argmax(values >= target)])


def rise(rounds: np.ndarray, values: np.ndarray, total_rounds: int, fraction: float = WINDOW) -> float:
    """How much the fitted line through the window's points (the round before it included) climbs across it."""
    start = window_start(total_rounds, fraction)
    inside = rounds >= start
    if inside.sum() < 2:
        return math.nan
    slope = np.polyfit(rounds[inside], values[inside], 1)[0]
    return float(slope * (rounds[inside].max() - rounds[inside].min()))


def seed_converged(rise_value: float, failed: bool, threshold: float = RISE_THRESHOLD) -> bool:
    """One seed's convergence: its curve rose by at most ``threshold`` over the window, and it neither
    collapsed nor diverged (a flat line at chance is a failure, not a converged model)."""
    return not failed and not math.isnan(rise_value) and rise_value <= threshold


def mean_curve(histories: Sequence[Sequence[dict[str, Any]]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The mean over runs of ``key`` at each round that every run evaluated."""
    curves = [dict(zip(*curve(history, key))) for history in histories]
    common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return np.asarray(common, dtype=float), np.asarray([np.mean([c[r] for c in curves]) for r in common])
