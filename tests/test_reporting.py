"""fedakd.reporting: collecting runs, tables, figures and the report, on a synthetic set of runs."""

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fedakd.config import config_digest, load_schema, schema_problems
from fedakd.config.study import Study
from fedakd import layout
from fedakd.io import atomic_write_json, atomic_write_text
from fedakd.reporting import collect, figures, report, tables
from fedakd.reporting.comparisons import COMPARISON_COLUMNS
from fedakd.reporting.collect import ResultsError

SEEDS = (0, 1, 2)
SETTINGS = {
    "lt10-dir1": {"imbalance": {"kind": "longtail", "factor": 10.0, "minority_fraction": 0.5, "shuffle_classes": False},
                  "split": {"kind": "dirichlet", "alpha": 1.0, "min_size": 10, "max_retries": 100}},
    "lt100-dir1": {"imbalance": {"kind": "longtail", "factor": 100.0, "minority_fraction": 0.5,
                                 "shuffle_classes": False},
                   "split": {"kind": "dirichlet", "alpha": 1.0, "min_size": 10, "max_retries": 100}},
    "bal-iid": {"imbalance": {"kind": "none", "factor": 1.0, "minority_fraction": 0.5, "shuffle_classes": False},
                "split": {"kind": "iid", "min_size": 10, "max_retries": 100}},
}
METHODS = {"fedavg": {"method": "fedavg"}, "fedakd": {"method": "fedakd", "distill_steps": 10},
           "fedakd-noattn": {"method": "fedakd", "distill_steps": 10, "attention": False}}
# Final accuracy for seeds 0, 1, 2; minority recall is accuracy - 0.25 on the long-tailed settings.
ACCURACY = {
    ("lt10-dir1", "fedavg"): [0.70, 0.74, 0.72],
    ("lt10-dir1", "fedakd"): [0.75, 0.76, 0.78],
    ("lt10-dir1", "fedakd-noattn"): [0.71, 0.74, 0.73],
    ("lt100-dir1", "fedavg"): [0.60, 0.62, 0.61],
    ("lt100-dir1", "fedakd"): [0.66, 0.67, 0.67],
    ("lt100-dir1", "fedakd-noattn"): [0.61, 0.60, 0.63],
    ("bal-iid", "fedavg"): [0.90, 0.91, 0.92],
    ("bal-iid", "fedakd"): [0.91, 0.91, 0.93],
    ("bal-iid", "fedakd-noattn"): [0.90, 0.90, 0.92],
}
CLASS_COUNTS = {"lt10-dir1": [100, 46, 21, 10], "lt100-dir1": [100, 21, 4, 1], "bal-iid": [100, 100, 100, 100]}
LONGTAIL_GROUPS = {"head": [0, 1], "medium": [2], "tail": [3], "minority": [3]}
NO_GROUPS = {"head": [], "medium": [], "tail": [], "minority": []}
CONFIG = {"experiment": "synthetic", "tracking_uri": "sqlite:///results/mlflow.db", "data_root": "data",
          "device": "cpu", "seeds": list(SEEDS), "datasets": ["digits"], "settings": SETTINGS,
          "federation": {"clients": 3, "fraction": 1.0, "rounds": 3, "local_epochs": 1, "batch_size": 32,
                         "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "eval_every": 1, "proxy_per_class": 5},
          "model": {"backbone": "mlp"}, "methods": METHODS}


def partition_hash(setting: str, seed: int) -> str:
    return hashlib.sha256(f"{setting}/{seed}".encode()).hexdigest()


def metrics_at(accuracy: float, setting: str) -> dict:
    """METRICS of the contract, derived from the accuracy (None for the groups a balanced pool lacks)."""
    longtail = setting != "bal-iid"
    return {"accuracy": accuracy, "balanced_accuracy": accuracy - 0.05, "macro_f1": accuracy - 0.08,
            "minority_recall": accuracy - 0.25 if longtail else None, "worst_class_recall": accuracy - 0.3,
            "gmean": accuracy - 0.1, "nll": 1.5 - accuracy,
            "head_accuracy": accuracy + 0.1 if longtail else None,
            "medium_accuracy": accuracy - 0.05 if longtail else None,
            "tail_accuracy": accuracy - 0.25 if longtail else None,
            "per_class_recall": [accuracy + 0.1, accuracy + 0.05, accuracy - 0.05, accuracy - 0.25]}


def make_run(setting: str, method: str, seed: int, accuracy: float) -> dict:
    """One metrics.json following the contract exactly."""
    history = [{"round": r, **metrics_at(accuracy - 0.1 * (3 - r), setting), "bytes_down": 3 * 4000 * r,
                "bytes_up": 3 * 4000 * r, "train_loss": 1.0 / r} for r in (1, 2, 3)]
    return {
        "job": {"dataset": "digits", "setting": setting, "method": method, "method_class": METHODS[method]["method"],
                "seed": seed},
        "setting": SETTINGS[setting],
        "method_options": {k: v for k, v in METHODS[method].items() if k != "method"},
        "federation": CONFIG["federation"], "model": {"backbone": "mlp", "num_params": 1000},
        "num_classes": 4, "class_counts": CLASS_COUNTS[setting],
        "groups": NO_GROUPS if setting == "bal-iid" else LONGTAIL_GROUPS,
        "partition_sha256": partition_hash(setting, seed),
        "final": metrics_at(accuracy, setting), "best": {**metrics_at(accuracy, setting), "round": 3},
        "failure": {"collapsed": None, "diverged": None}, "history": history,
        "cost": {"local_steps": 30 * 3, "server_steps": 10 * 3 if method != "fedavg" else 0,
                 "bytes_down": 3 * 4000 * 3, "bytes_up": 3 * 4000 * 3, "rounds": 3, "clients_per_round": 3},
        "mlflow_run_id": f"run-{setting}-{method}-{seed}", "mlflow_experiment_id": "1",
        "git_commit": "abc123", "device": "cpu", "job_digest": f"digest-{setting}-{method}-{seed}",
        "reference": False, "class_names": ["0", "1", "2", "3"], "client_counters": {},
        "partition": {"num_examples": sum(CLASS_COUNTS[setting]), "clients": 3, "transfer_set": 20,
                      "validation_set": 0},
        "confusion_matrix": [[0] * 4 for _ in range(4)],
    }


def make_manifest(setting: str, seed: int) -> dict:
    counts = CLASS_COUNTS[setting]
    client_class_counts = [[c // 3 + (k < c % 3) for c in counts] for k in range(3)]
    return {"format_version": 1, "dataset": "digits", "seed": seed, "sha256": partition_hash(setting, seed),
            "params": {"dataset": "digits", "seed": seed, "clients": 3, "proxy_per_class": 5, **SETTINGS[setting],
                       "num_classes": 4},
            "num_classes": 4, "class_counts": counts, "client_class_counts": client_class_counts,
            "client_sizes": [sum(row) for row in client_class_counts], "transfer_counts": [5, 5, 5, 5],
            "groups": NO_GROUPS if setting == "bal-iid" else LONGTAIL_GROUPS}


@pytest.fixture
def runs() -> list[dict]:
    return [make_run(setting, method, seed, ACCURACY[setting, method][i])
            for (setting, method) in ACCURACY for i, seed in enumerate(SEEDS)]


@pytest.fixture
def manifests() -> list[dict]:
    return [make_manifest(setting, seed) for setting in SETTINGS for seed in SEEDS]


@pytest.fixture
def frame(runs):
    return collect.runs_frame(runs)


# -- collect --------------------------------------------------------------------------------
def test_load_metrics_round_trip(tmp_path, runs):
    paths = [atomic_write_json(tmp_path / f"{i}" / "metrics.json", run) for i, run in enumerate(runs[:3])]
    atomic_write_json(tmp_path / "0" / "timings.json", {"history": [], "wall_seconds": 12.5})
    loaded = collect.load_metrics(paths)
    assert [{k: v for k, v in run.items() if k not in ("wall_seconds", "run_folder")} for run in loaded] == runs[:3]
    assert loaded[0]["run_folder"] == str((tmp_path / "0").resolve())  # whose MLflow run it is
    assert [run["wall_seconds"] for run in loaded] == [12.5, None, None]  # from timings.json, when it exists


def test_load_metrics_lists_every_bad_file(tmp_path, runs):
    good = atomic_write_json(tmp_path / "good" / "metrics.json", runs[0])
    corrupt = atomic_write_text(tmp_path / "corrupt" / "metrics.json", '{"job": ')
    incomplete_run = {k: v for k, v in runs[1].items() if k != "history"}
    incomplete_run["final"] = {k: v for k, v in runs[1]["final"].items() if k != "gmean"}
    incomplete = atomic_write_json(tmp_path / "incomplete" / "metrics.json", incomplete_run)
    with pytest.raises(ResultsError) as error:
        collect.load_metrics([good, corrupt, incomplete])
    message = str(error.value)
    assert str(corrupt) in message and str(incomplete) in message and str(good) not in message
    assert "history" in message and "final.gmean" in message
    assert message.count("delete it") == 2


def test_runs_frame_columns_and_values(frame):
    assert list(frame.columns) == list(collect.FRAME_COLUMNS)
    assert len(frame) == 27
    row = frame[(frame.setting == "lt10-dir1") & (frame.method == "fedakd") & (frame.seed == 1)].iloc[0]
    assert row["method_class"] == "fedakd" and row["imbalance_kind"] == "longtail"
    assert_allclose([row["accuracy"], row["minority_recall"], row["imbalance_factor"], row["split_alpha"]],
                    [0.76, 0.51, 10.0, 1.0])
    assert_allclose(row["per_class_recall"], [0.86, 0.81, 0.71, 0.51])
    balanced = frame[frame.setting == "bal-iid"]
    assert balanced["minority_recall"].isna().all() and balanced["split_alpha"].isna().all()


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """One SQLite store for all cross-check tests (creating one costs seconds); each test uses its own experiment."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    return uri, MlflowClient(tracking_uri=uri)


def _log_runs(client, experiment: str, runs: list[dict], extra: tuple = ()) -> list[dict]:
    """A FINISHED MLflow run per metrics.json (ids written back into copies), plus ``extra`` (job_key, status)."""
    from mlflow.entities import Metric

    experiment_id = client.create_experiment(experiment)
    logged = []
    for run in runs:
        mlflow_run = client.create_run(experiment_id, tags={"job_key": collect.job_key(run["job"])})
        points = [Metric(key, record[key], 0, record["round"]) for record in run["history"]
                  for key in collect.HEADLINE_STEPS if record.get(key) is not None]
        client.log_batch(mlflow_run.info.run_id, metrics=points)
        client.set_terminated(mlflow_run.info.run_id, "FINISHED")
        logged.append({**run, "mlflow_run_id": mlflow_run.info.run_id, "mlflow_experiment_id": experiment_id})
    for key, status in extra:
        client.set_terminated(client.create_run(experiment_id, tags={"job_key": key}).info.run_id, status)
    return logged


def test_crosscheck_accepts_matching_runs_over_several_pages(mlflow_store, runs):
    uri, client = mlflow_store
    key = collect.job_key(runs[0]["job"])
    logged = _log_runs(client, "matching", runs[:5], extra=((key, "KILLED"), (key, "FAILED")))
    # A superseded FINISHED run, deleted as the training job does: must not count as a duplicate.
    duplicate = client.create_run(logged[0]["mlflow_experiment_id"], tags={"job_key": key})
    client.set_terminated(duplicate.info.run_id, "FINISHED")
    client.delete_run(duplicate.info.run_id)
    note = collect.crosscheck_mlflow(logged, uri, "matching", page_size=2)  # 7 active runs: 4 pages
    assert "5 finished runs" in note and "1 FAILED" in note and "1 KILLED" in note


def test_crosscheck_lists_every_mismatch(mlflow_store, runs):
    uri, client = mlflow_store
    logged = _log_runs(client, "mismatched", runs[:4], extra=((collect.job_key(runs[1]["job"]), "FINISHED"),))
    lost = {**logged[0], "mlflow_run_id": "0" * 32}          # its run is not in the store
    orphan_key = collect.job_key(logged[2]["job"])            # FINISHED run of a job not collected
    with pytest.raises(ResultsError) as error:
        collect.crosscheck_mlflow([lost, logged[1], logged[3]], uri, "mismatched", page_size=2)
    message = str(error.value)
    assert f"{collect.job_key(lost['job'])}: metrics.json names MLflow run {'0' * 32}" in message
    assert f"{collect.job_key(logged[1]['job'])}: 2 FINISHED MLflow runs" in message
    assert orphan_key not in message  # a job outside the collected set is out of scope, not an error
    assert collect.job_key(logged[3]["job"]) not in message


def test_crosscheck_notes_runs_of_jobs_outside_the_collection(mlflow_store, runs):
    uri, client = mlflow_store
    logged = _log_runs(client, "dropped-method", runs[:3])
    note = collect.crosscheck_mlflow(logged[:2], uri, "dropped-method")
    assert "2 finished runs match" in note
    assert f"ignored 1 finished run(s) of jobs not collected here ({collect.job_key(logged[2]['job'])})" in note


def test_crosscheck_refuses_a_run_missing_a_round_naming_it(mlflow_store, runs):
    import sqlite3

    uri, client = mlflow_store
    logged = _log_runs(client, "gappy", runs[:2])
    gap = logged[1]
    # one point deleted from the store behind MLflow's back (MLflow has no call to delete a metric point)
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
        db.execute("DELETE FROM metrics WHERE run_uuid = ? AND key = 'balanced_accuracy' AND step = 2",
                   (gap["mlflow_run_id"],))
        db.execute("DELETE FROM latest_metrics WHERE run_uuid = ? AND key = 'balanced_accuracy'", (gap["mlflow_run_id"],))
    with pytest.raises(ResultsError) as error:
        collect.crosscheck_mlflow(logged, uri, "gappy")
    message = str(error.value)
    assert f"{collect.job_key(gap['job'])}: MLflow run {gap['mlflow_run_id']} disagrees with its metrics.json " \
           f"(balanced_accuracy: missing rounds [2])" in message
    assert collect.job_key(logged[0]["job"]) not in message


def test_crosscheck_unknown_experiment(mlflow_store, runs):
    uri, _ = mlflow_store
    with pytest.raises(ResultsError, match="'no-such-experiment' does not exist"):
        collect.crosscheck_mlflow(runs, uri, "no-such-experiment")


# -- tables ---------------------------------------------------------------------------------
def with_comparisons(config: dict) -> dict:
    """``config`` with its comparisons block checked and its defaults filled from the schema, as validation does
    (the synthetic config here is not a whole valid config)."""
    block = dict(config.get("comparisons", {}))
    assert not schema_problems(block, {**load_schema()["properties"]["comparisons"], "$defs": {}})
    return {**config, "comparisons": block}


@pytest.fixture
def study():
    return Study.from_config(with_comparisons(CONFIG))


def test_the_study_declares_its_comparisons_from_the_config(study):
    # every method against fedavg, fedakd against every other, no repeats
    assert study.pairs == (("fedakd", "fedavg"), ("fedakd-noattn", "fedavg"), ("fedakd", "fedakd-noattn"))
    assert study.baseline == "fedavg" and study.focus == "fedakd"
    assert Study.from_dict(study.to_dict()) == study
    explicit = {**CONFIG, "comparisons": {"baseline": None, "pairs": [["fedakd-noattn", "fedakd"]]}}
    assert Study.from_config(with_comparisons(explicit)).pairs == (("fedakd", "fedavg"), ("fedakd", "fedakd-noattn"))


def test_summary_hand_computed(frame, study):
    summary = tables.summary_table(frame, study)
    assert len(summary) == 9 and (summary["n_seeds"] == 3).all() and not summary["reference"].any()
    row = summary[(summary.setting == "lt10-dir1") & (summary.method == "fedavg")].iloc[0]
    # accuracy 0.70, 0.74, 0.72: mean 0.72; deviations -0.02, 0.02, 0 -> std = sqrt(0.0008 / 2) = 0.02
    # percentile bootstrap: a resample of 3 seeds is all 0.70 with probability 1/27 = 0.037 > 0.025, so the
    # 2.5 % quantile of the resampled means is 0.70, and likewise the 97.5 % one is 0.74 (a t-interval,
    # 0.72 -+ 0.0497, would leave the values' range)
    assert_allclose([row["accuracy_mean"], row["accuracy_std"]], [0.72, 0.02], atol=1e-12)
    assert_allclose([row["accuracy_ci_low"], row["accuracy_ci_high"]], [0.70, 0.74], atol=1e-12)
    # balanced accuracy is accuracy - 0.05 and climbs 0.1 a round: the last 20 % of 3 rounds is round 3
    # (late mean = final, 0.67), 95 % of the final is first reached at round 3, and the rise from round 2
    # to round 3 is 0.1 > 0.01: not converged.
    assert row["late_balanced_accuracy_mean"] == pytest.approx(0.67)
    assert row["rounds_to_reach_mean"] == 3 and row["late_rise"] == pytest.approx(0.1) and not row["converged"]
    assert row["n_converged"] == 0
    assert row["optimistic_best_round_balanced_accuracy_mean"] == pytest.approx(0.67)
    balanced = summary[summary.setting == "bal-iid"]
    assert balanced["minority_recall_mean"].isna().all() and balanced["minority_recall_ci_low"].isna().all()


def test_convergence_flag_follows_the_late_rise(runs, study):
    flat = []
    for run in runs:
        history = [{**record, "balanced_accuracy": run["final"]["balanced_accuracy"]} for record in run["history"]]
        flat.append({**run, "history": history})
    summary = tables.summary_table(collect.runs_frame(flat), study)
    assert summary["converged"].all() and (summary["n_rising"] == 0).all()
    assert summary["late_rise"].isna().all()  # the largest rise among seeds still rising: none is


def test_summary_with_one_seed_has_no_spread(frame, study):
    row = tables.summary_table(frame[frame.seed == 0], study).iloc[0]
    assert row["n_seeds"] == 1 and row["accuracy_mean"] == pytest.approx(0.70)
    assert math.isnan(row["accuracy_std"]) and math.isnan(row["accuracy_ci_low"])


def test_comparisons_match_scipy_and_holm_over_the_family(frame, study):
    from scipy import stats

    from fedakd.reporting.stats import holm

    comparison = tables.comparison_table(frame, study.pairs, study.primary, study.secondary, study.alpha)
    assert list(comparison.columns) == list(COMPARISON_COLUMNS)
    assert len(comparison) == 3 * 3 * 5  # settings x declared comparisons x (1 primary + 4 secondary metrics)
    assert "accuracy" not in set(comparison["metric"])  # equal to balanced accuracy on a balanced test set
    row = comparison[(comparison.setting == "lt10-dir1") & (comparison.method == "fedakd")
                     & (comparison.baseline == "fedavg") & (comparison.metric == "balanced_accuracy")].iloc[0]
    fedakd, fedavg = ACCURACY["lt10-dir1", "fedakd"], ACCURACY["lt10-dir1", "fedavg"]
    # differences 0.05, 0.02, 0.06 -> mean 0.043333 (balanced accuracy is accuracy - 0.05 in both)
    assert_allclose(row["mean_diff"], 0.13 / 3)
    assert_allclose(row["ttest_p"], stats.ttest_rel(fedakd, fedavg).pvalue)
    assert_allclose(row["wilcoxon_p"], stats.wilcoxon(np.subtract(fedakd, fedavg)).pvalue)
    # the primary family is the 3 declared comparisons on balanced accuracy alone, not 3 x 5 metrics
    assert row["n_pairs"] == 3 and row["note"] == "" and row["family_size"] == 3 and row["family"] == "primary"
    primary = comparison[(comparison.setting == "lt10-dir1") & (comparison.family == "primary")]
    assert_allclose(primary["ttest_p_holm"], holm(primary["ttest_p"]))
    for metric in study.secondary:  # each secondary metric its own family
        block = comparison[(comparison.setting == "lt10-dir1") & (comparison.metric == metric)]
        assert (block["family"] == "secondary").all()
        assert_allclose(block["ttest_p_holm"], holm(block["ttest_p"]))
    assert set(primary["verdict"]) <= {"win", "tie", "loss"}
    # fedakd 0.70, 0.71, 0.73 against fedavg 0.65, 0.69, 0.67: every one of the 9 run pairs is an improvement
    assert row["prob_improvement"] == 1.0
    balanced = comparison[(comparison.setting == "bal-iid") & (comparison.metric == "minority_recall")]
    assert balanced["ttest_p"].isna().all() and balanced["note"].str.contains("undefined").all()
    assert (balanced["verdict"] == "untested").all() and (balanced["family_size"] == 0).all()
    # bal-iid: fedakd - fedakd-noattn is 0.01 in every seed (a t-test cannot be run on identical differences)
    assert (comparison[(comparison.setting == "bal-iid") & (comparison.family == "primary")]["family_size"] == 2).all()


def test_comparison_untestable_cases(frame):
    two_methods = frame[frame.method.isin(["fedavg", "fedakd"]) & (frame.setting == "lt10-dir1")].copy()
    pairs, metrics = [("fedakd", "fedavg")], ("accuracy", ["balanced_accuracy"], 0.05)
    one_pair = tables.comparison_table(two_methods[two_methods.seed == 0], pairs, *metrics)
    assert one_pair["wilcoxon_p"].isna().all() and one_pair["ttest_p"].isna().all()
    assert one_pair["note"].str.contains("1 seed pair").all()
    tied = two_methods.copy()
    tied.loc[tied.method == "fedakd", "accuracy"] = tied.loc[tied.method == "fedavg", "accuracy"].to_numpy()
    row = tables.comparison_table(tied, pairs, *metrics).query("metric == 'accuracy'").iloc[0]
    assert math.isnan(row["wilcoxon_p"]) and row["note"] == "all differences zero: no test"
    no_baseline = tables.comparison_table(two_methods[two_methods.method == "fedakd"], pairs, *metrics)
    assert no_baseline["ttest_p"].isna().all() and (no_baseline["note"] == "no runs of fedavg here").all()


def test_ladder_steps_are_paired_differences(frame, study):
    ladder = tables.ladder_table(frame, study.ladder, study.metrics, study.ladder_adds)
    lt10 = ladder[(ladder.setting == "lt10-dir1") & (ladder.metric == "balanced_accuracy")]
    # the config lacks fedavg-ft: fedavg -> fedakd-noattn -> fedakd
    assert lt10["from_method"].tolist() == ["fedavg", "fedakd-noattn"]
    assert lt10["adds"].tolist() == ["fedakd-noattn over fedavg", "attention"]
    # fedakd-noattn - fedavg: 0.01, 0.00, 0.01 -> 0.00667; fedakd - fedakd-noattn: 0.04, 0.02, 0.05 -> 0.03667
    assert_allclose(lt10["mean_diff"], [0.02 / 3, 0.11 / 3], atol=1e-12)
    assert (lt10["ci_low"] < lt10["mean_diff"]).all()


def test_cost_table_means_over_seeds(frame):
    cost = tables.cost_table(frame)
    row = cost[(cost.setting == "lt10-dir1") & (cost.method == "fedakd")].iloc[0]
    assert row["local_steps"] == 90 and row["server_steps"] == 30 and row["rounds"] == 3
    assert row["megabytes_per_round"] == pytest.approx((36000 + 36000) / 1e6 / 3)


def test_write_tables(tmp_path, frame, study):
    built = tables.build_tables(frame, study)
    written = tables.write_tables(built, tmp_path, study)
    assert sorted(p.name for p in written) == sorted(f"{n}.{e}" for n in layout.TABLE_NAMES
                                                     for e in ("csv", "md", "tex"))
    import pandas as pd

    reread = pd.read_csv(tmp_path / "summary.csv")
    assert_allclose(reread["accuracy_ci_low"], built["summary"]["accuracy_ci_low"], rtol=1e-15)
    markdown = (tmp_path / "summary.md").read_text()
    assert "0.670 ± 0.020 [0.650, 0.690]" in markdown and "balanced accuracy" in markdown  # BA = accuracy - 0.05
    assert "0 of 3 (3 rising up to +10.0 pts)" in markdown
    comparison = (tmp_path / "comparison.md").read_text()
    assert "fedakd − fedavg" in comparison and "t p (Holm)" in comparison
    latex = (tmp_path / "comparison.tex").read_text()
    assert r"\begin{tabular}" in latex and r"lt10-dir1" in latex and "minority recall" in latex
    assert "_" not in re.sub(r"\\_", "", latex.replace(r"\label{tab:comparison}", ""))
    assert "$\\rightarrow$" in (tmp_path / "ladder.tex").read_text()


# -- figures --------------------------------------------------------------------------------
def _assert_png_and_pdf(paths: list[Path], expected_stems: set[str]) -> None:
    assert {p.stem for p in paths} == expected_stems
    for path in paths:
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:4] == (b"\x89PNG" if path.suffix == ".png" else b"%PDF")
    assert sorted(p.suffix for p in paths) == sorted([".pdf", ".png"] * len(expected_stems))


@pytest.mark.parametrize("kind", ["learning_curves", "per_class_recall", "accuracy_vs_bytes"])
def test_per_setting_figures(tmp_path, runs, kind):
    paths = getattr(figures, kind)(runs, tmp_path)
    _assert_png_and_pdf(paths, {f"{kind}_digits_{setting}" for setting in SETTINGS})


def test_per_class_recall_with_shuffled_classes(tmp_path, runs):
    lt10 = [run for run in runs if run["job"]["setting"] == "lt10-dir1"]
    lt10[1] = {**lt10[1], "class_counts": [10, 21, 46, 100], "groups": {"head": [2, 3], "medium": [1], "tail": [0],
                                                                       "minority": [0]}}
    assert figures._class_layout(lt10)[0].startswith("class rank")
    _assert_png_and_pdf(figures.per_class_recall(lt10, tmp_path), {"per_class_recall_digits_lt10-dir1"})


def test_minority_vs_imbalance(tmp_path, runs):
    _assert_png_and_pdf(figures.minority_vs_imbalance(runs, tmp_path), {"minority_vs_imbalance_digits"})
    balanced_only = [run for run in runs if run["job"]["setting"] == "bal-iid"]
    assert figures.minority_vs_imbalance(balanced_only, tmp_path / "none") == []


def test_partition_heatmap(tmp_path, manifests):
    png = figures.partition_heatmap(manifests[0], tmp_path / "seed0" / "heatmap.png")
    assert png == tmp_path / "seed0" / "heatmap.png"
    _assert_png_and_pdf([png, png.with_suffix(".pdf")], {"heatmap"})


def test_make_figures_names_heatmaps_by_setting(tmp_path, runs, manifests):
    lt10 = [run for run in runs if run["job"]["setting"] == "lt10-dir1"]
    paths = figures.make_figures(lt10, manifests[:1], tmp_path)
    assert {p.stem for p in paths} == {"learning_curves_digits_lt10-dir1", "per_class_recall_digits_lt10-dir1",
                                       "minority_vs_imbalance_digits", "accuracy_vs_bytes_digits_lt10-dir1",
                                       "partition_digits_lt10-dir1_seed0"}
    assert all(p.exists() for p in paths)


# -- report ---------------------------------------------------------------------------------
@pytest.fixture
def written_report(tmp_path, runs, manifests, frame, study):
    built = tables.build_tables(frame, study)
    lt = [run for run in runs if run["job"]["setting"] != "bal-iid"]
    figure_paths = figures.learning_curves(lt[:3], tmp_path / "figures")
    path = report.write_report(runs, built, figure_paths, tmp_path / "report.md", CONFIG, manifests, study)
    return path, path.read_text(), built


def test_the_report_opens_with_what_the_study_is_for(tmp_path, runs, manifests, frame, study):
    described = {**CONFIG, "description": "A quick look: the methods have not converged."}
    path = report.write_report(runs, tables.build_tables(frame, study), [], tmp_path / "report.md", described,
                               manifests, study)
    assert path.read_text().startswith("# fedakd-bench report: synthetic\n\nA quick look: the methods have not "
                                       "converged.\n\n## Verdict")


def test_report_setup_partitions_and_tables(written_report):
    path, text, _ = written_report
    assert path.name == "report.md" and text.startswith("# fedakd-bench report: synthetic\n\n## Verdict")
    assert f"`{config_digest(CONFIG)}`" in text
    assert len(config_digest(CONFIG)) == 64 and config_digest(dict(reversed(CONFIG.items()))) == \
        config_digest(CONFIG)
    for setting in SETTINGS:
        for seed in SEEDS:
            assert f"| digits | {setting} | {seed} | `{partition_hash(setting, seed)}` |" in text
    assert "| fedakd-noattn | fedakd | distill_steps = 10, attention = false |" in text
    assert "| fedavg | fedavg | none |" in text
    assert "final-round" in text and "optimistic" in text
    assert "0.670 ± 0.020" in text and "Wilcoxon p (Holm)" in text and "### Ablation ladder" in text
    assert "### Cost" in text


def test_report_links_figures_relative_to_its_folder(written_report):
    path, text, _ = written_report
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links == ["figures/learning_curves_digits_lt10-dir1.png", "figures/learning_curves_digits_lt10-dir1.pdf"]
    assert all((path.parent / link).exists() for link in links)


def test_report_verdict_follows_the_adjusted_tests(written_report):
    _, text, built = written_report
    verdict = text.split("## Verdict")[1].split("## How the verdict is drawn")[0]
    comparison = built["comparison"]

    def row(setting, metric):
        return comparison[(comparison.setting == setting) & (comparison.method == "fedakd")
                          & (comparison.baseline == "fedavg") & (comparison.metric == metric)].iloc[0]

    # lt100: differences 0.06, 0.05, 0.06 are small-p; lt10's 0.05, 0.02, 0.06 are not, after adjustment
    assert row("lt100-dir1", "balanced_accuracy")["verdict"] == "win"
    assert row("lt10-dir1", "balanced_accuracy")["verdict"] == "tie"
    lt10 = verdict.split("### digits / lt10-dir1")[1].split("### digits / lt100-dir1")[0]
    lt100 = verdict.split("### digits / lt100-dir1")[1].split("### digits / bal-iid")[0]
    r = row("lt100-dir1", "balanced_accuracy")
    assert f"fedakd beats fedavg ({r['mean_diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]) on balanced " \
           f"accuracy" in lt100 and "It is not distinguishable from fedakd-noattn." in lt100
    assert "fedakd beats none of its 2 declared rivals on balanced accuracy" in lt10
    assert "It is not distinguishable from fedavg, fedakd-noattn." in lt10
    assert "the largest clear step is attention (fedakd-noattn → fedakd)" in lt10
    # every fedavg curve still climbs 0.1 a round: the first sentence says so
    assert lt10.split("\n\n")[1].startswith(
        "fedavg has converged on 0 of 3 seeds here (3 still rising), so this compares how fast")
    paragraph = lt10.split("\n\n")[1]
    assert paragraph.count(". ") + 1 <= 3  # at most three sentences
    note = text.split("## How the verdict is drawn")[1]
    assert "cannot give a two-sided p below 0.25" in note and "Holm-adjusted" in note
    assert "**primary** metric, balanced accuracy" in note and "minimum difference" in note


def test_a_method_best_by_mean_but_not_significantly_is_not_called_better(tmp_path, runs, manifests, study):
    """fedakd has the highest mean in every seed-averaged sense here, but its differences from fedavg
    are noisy: the report must say 'not distinguishable', never 'better'."""
    noisy = {0: 0.20, 1: -0.15, 2: 0.10}  # mean +0.05, not significant with 3 seeds
    shifted = []
    for run in runs:
        if run["job"]["method"] == "fedakd" and run["job"]["setting"] == "lt10-dir1":
            final = {key: (value + noisy[run["job"]["seed"]] if isinstance(value, float) else value)
                     for key, value in run["final"].items()}
            run = {**run, "final": final}
        shifted.append(run)
    frame = collect.runs_frame(shifted)
    lt10 = tables.summary_table(frame, study).query("setting == 'lt10-dir1'")
    assert lt10.sort_values("balanced_accuracy_mean").iloc[-1]["method"] == "fedakd"  # best by mean
    built = tables.build_tables(frame, study)
    text = report.write_report(shifted, built, [], tmp_path / "report.md", CONFIG, manifests, study).read_text()
    lt10_verdict = text.split("### digits / lt10-dir1")[1].split("### digits / lt100-dir1")[0]
    assert "beats none" in lt10_verdict and "not distinguishable" in lt10_verdict


def test_report_needs_every_table(tmp_path, runs, manifests, frame, study):
    with pytest.raises(ResultsError, match="comparison"):
        report.write_report(runs, {"summary": tables.summary_table(frame, study)}, [], tmp_path / "r.md", CONFIG,
                            manifests, study)


def test_a_collapsed_run_stays_in_the_statistics_is_counted_and_named(tmp_path, runs, manifests, study):
    """fedakd seed 1 on lt10 collapses to chance from round 2: its score enters every mean and test, the summary
    and the comparison count it, and the report's table of failed runs names it."""
    failed = []
    for run in runs:
        if (run["job"]["method"], run["job"]["setting"], run["job"]["seed"]) == ("fedakd", "lt10-dir1", 1):
            final = {**run["final"], "balanced_accuracy": 0.25}
            run = {**run, "final": final,
                   "failure": {"collapsed": {"round": 2, "step": "averaged", "top_class_share": 1.0},
                               "diverged": None}}
        failed.append(run)
    frame = collect.runs_frame(failed)
    assert frame["failed"].sum() == 1 and frame["collapsed"].sum() == 1 and not frame["diverged"].any()
    built = tables.build_tables(frame, study)
    summary = built["summary"].set_index(["setting", "method"])
    assert summary.loc[("lt10-dir1", "fedakd"), "n_collapsed"] == 1
    # balanced accuracy is accuracy - 0.05 here: 0.70, 0.25, 0.73, the collapsed seed in the mean
    assert summary.loc[("lt10-dir1", "fedakd"), "balanced_accuracy_mean"] == pytest.approx((0.70 + 0.25 + 0.73) / 3)
    readable = tables.format_summary(built["summary"], study)
    assert list(readable.loc[(readable.setting == "lt10-dir1") & (readable.method == "fedakd"), "failed seeds"]) == [
        "collapsed 1 of 3"]
    # every curve climbs 0.1 a round; the collapsed seed is counted as failed, not as rising
    assert list(readable.loc[(readable.setting == "lt10-dir1") & (readable.method == "fedakd"), "converged"]) == [
        "0 of 3 (2 rising up to +10.0 pts, 1 failed)"]
    comparison = built["comparison"]
    row = comparison[(comparison.setting == "lt10-dir1") & (comparison.method == "fedakd")
                     & (comparison.baseline == "fedavg") & (comparison.metric == "balanced_accuracy")].iloc[0]
    # fedavg's 0.65, 0.69, 0.67; with it: (0.05 - 0.44 + 0.06) / 3; without seed 1: (0.05 + 0.06) / 2
    assert row["mean_diff"] == pytest.approx((0.05 - 0.44 + 0.06) / 3) and row["n_pairs"] == 3
    assert row["mean_diff_without_failed"] == pytest.approx(0.055) and row["n_pairs_without_failed"] == 2
    assert (row["method_failed"], row["baseline_failed"]) == (1, 0)
    # differences without the failed seed, 0.05 and 0.06: std = 0.01 / sqrt(2)
    assert row["paired_std_without_failed"] == pytest.approx(0.01 / math.sqrt(2))
    text = report.write_report(failed, built, [], tmp_path / "report.md", CONFIG, manifests, study).read_text()
    lt10 = text.split("### digits / lt10-dir1")[1].split("### digits / lt100-dir1")[0]
    assert ("| failed | how | seeds | from round | step |\n|---|---|---|---|---|\n"
            "| fedakd | collapsed | 1 | 2 | averaged |\n") in lt10
    # 2 pairs without the failed seed are fewer than MIN_HEALTHY_PAIRS: no hollow mark, one clause says why
    assert "*No hollow mark against fedavg, fedakd-noattn: fewer than 3 pairs without a failed run.*" in lt10
    lt100 = text.split("### digits / lt100-dir1")[1].split("### digits / bal-iid")[0]
    assert "| failed |" not in lt100 and "1 of 27 runs collapsed or diverged" in text.split("### digits")[0]


def test_the_failed_run_table_groups_seeds_by_method_failure_and_step():
    def run(method, seed, failure):
        return {"job": {"dataset": "d", "setting": "s", "method": method, "seed": seed}, "failure": failure}

    collapsed = {"collapsed": {"round": 4, "step": "averaged"}, "diverged": None}
    runs = [run("fedakd", 3, collapsed), run("fedakd", 1, {"collapsed": {"round": 9, "step": "averaged"}}),
            run("fedakd", 2, {"diverged": {"round": 7, "step": "local"}, "collapsed": {"round": 8, "step": "local"}}),
            run("fedavg", 0, {"collapsed": None, "diverged": None}), {**run("fedavg", 5, collapsed),
                                                                     "job": {"dataset": "d", "setting": "other",
                                                                             "method": "fedavg", "seed": 5}}]
    assert report.failed_run_table(runs, "d", "s") == [
        "| failed | how | seeds | from round | step |", "|---|---|---|---|---|",
        "| fedakd | collapsed | 1, 3 | 9, 4 | averaged |", "| fedakd | diverged | 2 | 7 | local |"]
    assert report.failed_run_table(runs, "d", "nowhere") == []


def test_across_settings_iqm_and_probability_of_improvement_by_hand(frame, study):
    from scipy import stats

    across = tables.build_tables(frame, study)["across"].set_index("method")
    assert set(across.index) == {"fedavg", "fedakd", "fedakd-noattn"} and (across["runs"] == 9).all()
    fedavg = [a - 0.05 for setting in SETTINGS for a in ACCURACY[setting, "fedavg"]]  # balanced accuracy
    assert across.loc["fedavg", "iqm"] == pytest.approx(stats.trim_mean(fedavg, 0.25))
    low, high = across.loc["fedavg", ["iqm_ci_low", "iqm_ci_high"]]
    assert min(fedavg) <= low <= across.loc["fedavg", "iqm"] <= high <= max(fedavg)
    # P(fedakd > fedavg), per setting over the 3 x 3 run pairs (ties half): lt10 and lt100 9/9; bal-iid: fedakd's
    # 0.86, 0.86, 0.88 against fedavg's 0.85, 0.86, 0.87 -> (1.5 + 1.5 + 3) / 9 = 2/3; averaged: (1 + 1 + 2/3) / 3
    assert across.loc["fedavg", "prob_focus_improves"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert math.isnan(across.loc["fedakd", "prob_focus_improves"])


def test_convergence_text_tells_rising_seeds_from_failed_ones():
    assert tables.converged_text(8, 8, 0, math.nan) == "8 of 8"
    assert tables.converged_text(7, 8, 0, math.nan) == "7 of 8 (1 failed)"
    assert tables.converged_text(4, 8, 3, 0.051) == "4 of 8 (3 rising up to +5.1 pts, 1 failed)"
    import pandas as pd

    def block(converged, rising):
        return pd.DataFrame([{"method": "fedavg", "n_seeds": 8, "n_converged": converged, "n_rising": rising,
                              "converged": converged == 8}])

    # a baseline whose only unconverged seed collapsed has run long enough: no "compares how fast"
    assert report._convergence_clause(block(7, 0), "fedavg") == (
        "fedavg has converged on every seed that did not fail (7 of 8; 1 failed): ")
    assert report._convergence_clause(block(4, 3), "fedavg").startswith(
        "fedavg has converged on 4 of 8 seeds here (3 still rising), so this compares how fast")
    assert report._convergence_clause(block(8, 0), "fedavg") == ""


def test_the_power_note_gives_the_spread_without_failed_runs_beside_the_spread_with_them(study):
    import pandas as pd

    # one primary comparison, 10 seed pairs, a family of 1: a failed run makes the paired std 0.3; over the 9 pairs
    # without it the std is 0.02, which 10 seeds resolve at 2 points (tests/test_stats.py: 10 seeds, MDD 0.0199)
    comparison = pd.DataFrame([{"family": "primary", "n_pairs": 10, "family_size": 1, "paired_std": 0.3,
                                "paired_std_without_failed": 0.02, "n_pairs_without_failed": 9,
                                "method_failed": 1, "baseline_failed": 0}])
    note = " ".join(report._statistics_note({"comparison": comparison}, study))
    assert "**Power:** with the median paired standard deviation of the primary comparisons, 0.3000, and with 10 " \
           "seeds" in note and "a 2-point difference would need 1000 or more seeds." in note
    assert "over the seeds where neither run failed it is 0.0200, and with 10 seeds the minimum difference the " \
           "strictest Holm step (level 0.05/1) detects with 80% power is 0.020 (2.0 points); a 2-point difference " \
           "would need 10 seeds" in note
    # too few healthy pairs for a spread: no such sentence
    few = comparison.assign(n_pairs_without_failed=report.MIN_HEALTHY_PAIRS - 1)
    assert "neither run failed" not in " ".join(report._statistics_note({"comparison": few}, study))
