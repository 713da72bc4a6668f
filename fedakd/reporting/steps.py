"""The verdict across client step sizes (docs/method-card.md §5): a study may repeat a setting at other client
steps (a ``step_of`` setting); this module lines up the focus method's declared comparisons of a step family
(the base setting and its step settings) by effective step lr / (1 - momentum), and says whether the verdict
holds across the range or which step flips it.
"""

from __future__ import annotations

import math
from typing import Any

from fedakd.config.study import Study

STEP_COLUMNS = ("dataset", "family", "setting", "lr", "momentum", "step", "method", "baseline", "n_pairs",
                "mean_diff", "ci_low", "ci_high", "ttest_p_holm", "verdict", "method_failed", "baseline_failed")


VERBS = {"win": "beats", "loss": "loses to", "tie": "ties with", "untested": "is untested against"}


def families(study: Study) -> dict[str, list[str]]:
    """base setting -> its settings (the base first), for families of more than one step."""
    grouped: dict[str, list[str]] = {}
    for setting, base in study.step_family.items():
        grouped.setdefault(base, []).append(setting)
    return {base: sorted(members, key=lambda s: s != base) for base, members in grouped.items() if len(members) > 1}


def is_base(study: Study, setting: str) -> bool:
    """Whether a setting is no step setting (the across-settings statistics count each pool once)."""
    return study.step_family.get(setting, setting) == setting


def step_table(frame, comparison, study: Study):
    """Per dataset, step family, setting (by effective step) and rival: the focus method's comparison on the
    primary metric (paired difference, interval, Holm-adjusted p, verdict, failed runs of each side)."""
    import pandas as pd

    grouped = families(study)
    if not grouped or study.focus is None:
        return pd.DataFrame(columns=list(STEP_COLUMNS))
    steps = frame.groupby("setting")[["lr", "momentum", "step"]].first()
    primary = comparison[(comparison["family"] == "primary") & (comparison["method"] == study.focus)]
    rows = []
    for base, members in grouped.items():
        for row in primary[primary["setting"].isin(members)].itertuples(index=False):
            if row.setting not in steps.index:
                continue
            rows.append({"dataset": row.dataset, "family": base, "setting": row.setting,
                         **steps.loc[row.setting].to_dict(), "method": row.method, "baseline": row.baseline,
                         **{key: getattr(row, key) for key in ("n_pairs", "mean_diff", "ci_low", "ci_high",
                                                               "ttest_p_holm", "verdict", "method_failed",
                                                               "baseline_failed")}})
    table = pd.DataFrame(rows, columns=list(STEP_COLUMNS))
    return table.sort_values(["dataset", "family", "baseline", "step"], kind="stable").reset_index(drop=True)


def format_steps(table):
    """One row per dataset, family and rival; one column per effective step: 'verdict diff [interval]'."""
    import pandas as pd

    if table.empty:
        return pd.DataFrame(columns=["dataset", "setting", "focus", "rival"])
    rows = []
    for (dataset, family, method, baseline), group in table.groupby(["dataset", "family", "method", "baseline"],
                                                                    sort=False):
        row = {"dataset": dataset, "setting": family, "focus": method, "rival": baseline}
        for item in group.itertuples(index=False):
            cell = "–" if math.isnan(item.mean_diff) else (
                f"{item.verdict} {item.mean_diff:+.3f} [{item.ci_low:+.3f}, {item.ci_high:+.3f}]")
            failed = f"; failed {int(item.method_failed)}/{int(item.baseline_failed)}" \
                if item.method_failed or item.baseline_failed else ""
            row[f"step {item.step:g} (lr {item.lr:g})"] = cell + failed
        rows.append(row)
    return pd.DataFrame(rows)


def changed_verdicts(block) -> dict[str, list[tuple[float, str]]]:
    """One step family's rivals against whom the focus method's verdict changes with the step: rival -> (step,
    verdict) in step order; empty when the verdict holds across the range."""
    changed = {}
    for baseline, group in block.groupby("baseline", sort=False):
        ordered = group.sort_values("step")
        if ordered["verdict"].nunique() > 1:
            changed[baseline] = list(zip(ordered["step"], ordered["verdict"]))
    return changed


def step_sentences(table, study: Study) -> list[str]:
    """Per dataset and family: whether the focus method's verdict against every rival holds across the steps,
    or, rival by rival, at which step it changes."""
    sentences = []
    for (dataset, family), block in table.groupby(["dataset", "family"], sort=False):
        span = ", ".join(f"{s:g}" for s in sorted(block["step"].unique()))
        changed = changed_verdicts(block)
        head = f"*{dataset} {family}, effective client steps {span}:* "
        if not changed:
            verdicts = block.groupby("baseline", sort=False)["verdict"].first()
            by_verdict = {v: [b for b, w in verdicts.items() if w == v] for v in dict.fromkeys(verdicts)}
            summary = "; ".join(f"{VERBS.get(v, v)} {', '.join(rivals)}" for v, rivals in by_verdict.items())
            sentences.append(head + f"{study.focus}'s verdict holds across the range: at every step it {summary}.")
        else:
            sentences.append(head + f"{study.focus}'s verdict depends on the step: " + "; ".join(
                f"against {baseline} it is " + ", ".join(f"{v} at {s:g}" for s, v in steps)
                for baseline, steps in changed.items()) + ".")
    return sentences


def step_points(frame, study: Study, metric: str) -> list[dict[str, Any]]:
    """What the step figure draws, per dataset, family, method and step: the mean of ``metric`` over seeds with
    its 95 % bootstrap interval, and the failed runs' values."""
    from fedakd.reporting.stats import bootstrap_interval

    grouped = families(study)
    points = []
    for base, members in grouped.items():
        block = frame[frame["setting"].isin(members)]
        for (dataset, method, setting), group in block.groupby(["dataset", "method", "setting"], sort=False):
            values = group[metric].to_numpy(dtype=float)
            low, high = bootstrap_interval(values)
            points.append({"dataset": dataset, "family": base, "method": method, "step": float(group["step"].iloc[0]),
                           "mean": float(values.mean()), "ci_low": low, "ci_high": high,
                           "failed_values": group.loc[group["failed"].astype(bool), metric].tolist(),
                           "n": len(values)})
    return points
