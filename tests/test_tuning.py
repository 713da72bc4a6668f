"""Fair tuning: the tune block's checks, the grid, the selection rule, and (slow) the tuning stage of the
pipeline on digits."""

import copy
import json
import math
from pathlib import Path

import pytest
import yaml

from fedakd.config import ConfigError, validate_config
from fedakd.config.tuning import (SELECTION_RULE, grid, select, select_with_margin, selection_record, tuning_spec,
                                  with_options)
from tests.helpers import finished_job_runs
from tests.test_pipeline import SMOKE, job_counts, output, snakemake


def tuned_smoke() -> dict:
    """config/smoke.yaml cut to three methods, with a validation split and a two-candidate tune block."""
    config = yaml.safe_load(SMOKE.read_text())
    config["experiment"] = "tuned-smoke"
    config["settings"] = {"lt10-dir1": config["settings"]["lt10-dir1"]}  # without the step setting
    config["methods"] = {"fedavg": {"method": "fedavg"}, "fedprox": {"method": "fedprox"},
                         "fedakd": {"method": "fedakd", "distill_steps": 10}}
    config["federation"]["validation_per_class"] = 3
    config["tune"] = {"seeds": [7], "budget": 2,
                      "methods": {"fedprox": {"mu": [0.01, 0.5]}, "fedakd": {"lambda": [0.5, 2.0]}}}
    return config


def _dump(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def problems_of(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    return str(caught.value).splitlines()


def test_a_valid_tune_block_and_its_grid():
    config = validate_config(tuned_smoke())
    assert config["tune"]["metric"] == "val_balanced_accuracy"
    assert grid(config, "fedprox") == [{"mu": 0.01}, {"mu": 0.5}]
    assert grid(config, "fedavg") == [{}]  # not listed: its configured options, one candidate
    two_options = copy.deepcopy(config)
    two_options["tune"]["methods"]["fedakd"] = {"lambda": [0.5, 2.0], "temperature": [1.0, 4.0]}
    two_options["tune"]["budget"] = 4
    two_options["tune"]["methods"]["fedprox"]["mu"] = [0.001, 0.01, 0.1, 1.0]
    assert grid(validate_config(two_options), "fedakd") == [  # the Cartesian product, in the order written
        {"lambda": 0.5, "temperature": 1.0}, {"lambda": 0.5, "temperature": 4.0},
        {"lambda": 2.0, "temperature": 1.0}, {"lambda": 2.0, "temperature": 4.0}]


def test_tuning_and_evaluation_jobs_differ_only_where_they_should():
    from fedakd.config import job_spec

    config = validate_config(tuned_smoke())
    tuning = tuning_spec(config, dataset="digits", setting="lt10-dir1", method="fedprox", candidate=1, seed=7)
    assert tuning.method_options == {"mu": 0.5} and tuning.seed == 7 and tuning.experiment == "tuned-smoke-tuning"
    assert tuning.partition.validation_per_class == 3
    evaluation = job_spec(config, dataset="digits", setting="lt10-dir1", method="fedprox", seed=0)
    assert evaluation.method_options == {"mu": 0.01} and evaluation.experiment == "tuned-smoke"
    assert with_options(evaluation, {"mu": 0.5}).method_options == {"mu": 0.5}
    with pytest.raises(ConfigError, match="not in the tune block"):
        tuning_spec(config, dataset="digits", setting="lt10-dir1", method="fedprox", candidate=0, seed=0)


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["tune"]["methods"]["fedprox"].update(alpha=[1.0, 2.0]),
     "tune.methods.fedprox.alpha: [1.0, 2.0] -- an option of fedprox: mu"),
    (lambda c: c["tune"]["methods"]["fedprox"].update(mu=[]), "tune.methods.fedprox.mu: [] -- a non-empty list"),
    (lambda c: c["tune"]["methods"]["fedprox"].update(mu=[0.01, -1.0]), "tune.methods.fedprox.mu[1]: -1.0 -- a finite number >= 0"),
    (lambda c: c["tune"].update(seeds=[1, 7]), "tune.seeds[0]: 1 -- a seed that is not an evaluation seed"),
    (lambda c: c["tune"]["methods"]["fedprox"].update(mu=[0.01, 0.1, 1.0]),
     "tune.methods.fedprox: {'mu': [0.01, 0.1, 1.0]} -- at most tune.budget = 2 candidates (unequal budgets"),
    (lambda c: c["tune"]["methods"]["fedprox"].update(mu=[0.01]),
     "tune.methods.fedprox: {'mu': [0.01]} -- exactly tune.budget = 2 candidates (unequal budgets"),
    (lambda c: c["tune"]["methods"].pop("fedakd"),
     "tune.methods.fedakd: None -- exactly tune.budget = 2 candidates (unequal budgets: it is not in tune.methods"),
    (lambda c: c["federation"].update(validation_per_class=0), "federation.validation_per_class: 0 -- at least 1"),
    (lambda c: c["tune"]["methods"].update(fedsgd={"lr": [1, 2]}), "tune.methods.fedsgd: {'lr': [1, 2]} -- one of"),
    (lambda c: c["tune"].update(metric="test_accuracy"), "tune.metric: 'test_accuracy' -- one of"),
    (lambda c: c["tune"]["methods"].update(fedakd={"attention": [False, True], "attention_transfer": [0.5]}),
     "tune.methods.fedakd: {'attention': False, 'attention_transfer': 0.5} -- candidate 0: attention_transfer"),
])
def test_bad_tune_blocks_are_refused_naming_the_key(mutate, expected):
    config = tuned_smoke()
    mutate(config)
    lines = problems_of(config)
    assert any(line.startswith(expected) for line in lines), lines


@pytest.mark.parametrize("scores, chosen", [
    ([[0.5, 0.7], [0.6, 0.7], [0.4, 0.9]], 1),   # means 0.60, 0.65, 0.65: the tie goes to the first listed
    ([[0.2], [0.3], [0.1]], 1),
    ([[math.nan], [0.1]], 1),                     # an undefined score loses to any number
    ([[0.4, 0.4]], 0),
])
def test_selection_picks_the_best_mean_and_breaks_ties_by_grid_order(scores, chosen):
    assert select(scores) == chosen


# A hand-made protocol table: effective steps 0.1, 0.2, 0.5, 1.0 (lr 0.01 ... 0.1 at momentum 0.9), two tuning runs.
OK, FAIL = [False, False], [False, True]


@pytest.mark.parametrize("steps, scores, failed, chosen", [
    # 1.0 fails, 0.5 is clean but has no clean step above it; 0.2 (mean 0.80) beats 0.1 (0.75): 0.2
    ([0.1, 0.2, 0.5, 1.0], [[0.7, 0.8], [0.8, 0.8], [0.9, 0.8], [0.1, 0.1]], [OK, OK, OK, FAIL], 1),
    # 0.5 fails once: 0.2 loses its margin, and 0.1 is the only step with a clean step above it
    ([0.1, 0.2, 0.5, 1.0], [[0.7, 0.8], [0.8, 0.8], [0.9, 0.1], [0.1, 0.1]], [OK, OK, FAIL, FAIL], 0),
    # the grid's order does not matter; 0.5 lacks the margin, and the tie of 0.2 and 0.1 (both 0.80) goes to 0.1
    ([0.5, 1.0, 0.2, 0.1], [[0.9, 0.9], [0.1, 0.1], [0.9, 0.7], [0.8, 0.8]], [OK, FAIL, OK, OK], 3),
    # a step that failed itself is never chosen, whatever its mean
    ([0.1, 0.2, 0.5], [[0.5, 0.5], [0.99, 0.1], [0.6, 0.6]], [OK, FAIL, OK], None),
    # every step clean: the largest has no step above it to vouch for it, so the one below is chosen
    ([0.1, 0.2, 0.5], [[0.5, 0.5], [0.6, 0.6], [0.9, 0.9]], [OK, OK, OK], 1),
    ([0.1, 0.2], [[0.5, 0.5], [0.6, 0.6]], [OK, FAIL], None),  # no step keeps a clean step of margin
])
def test_the_protocol_step_keeps_a_clean_step_of_margin(steps, scores, failed, chosen):
    assert select_with_margin(steps, scores, failed) == chosen


def test_selection_record_says_what_was_chosen_and_why():
    record = selection_record(dataset="d", setting="s", method="m", candidates=[{"mu": 0.1}, {"mu": 1.0}],
                              scores=[[0.5, 0.7], [0.6, 0.7]], seeds=[7, 8], metric="val_balanced_accuracy",
                              budget=2)
    assert record["chosen"] == {"index": 1, "options": {"mu": 1.0}}
    assert [c["mean"] for c in record["candidates"]] == pytest.approx([0.6, 0.65])
    assert record["rule"] == SELECTION_RULE and record["note"] == ""
    short = selection_record(dataset="d", setting="s", method="m", candidates=[{}], scores=[[0.5]], seeds=[7],
                             metric="val_balanced_accuracy", budget=4)
    assert short["note"].startswith("1 of 4 candidates")


def mlflow_params(workdir: Path, experiment: str) -> dict[str, dict]:
    return {run.data.tags["job_key"]: run.data.params for run in finished_job_runs(workdir, experiment)}


@pytest.mark.slow
def test_the_tuning_stage_chooses_on_the_validation_split_and_feeds_the_evaluation(tmp_path):
    configfile = tmp_path / "tuned.yaml"
    configfile.write_text(yaml.safe_dump(tuned_smoke()))
    workdir = tmp_path / "work"
    workdir.mkdir()
    first = snakemake(workdir, configfile=configfile)
    assert first.returncode == 0, first.stderr[-3000:]
    counts = job_counts(first)
    assert counts["tune_train"] == 5 and counts["tune_select"] == 3 and counts["train"] == 6  # 1 + 2 + 2 candidates

    choices = {m: json.loads((workdir / f"results/tuning/digits/lt10-dir1/{m}.json").read_text())
               for m in ("fedavg", "fedprox", "fedakd")}
    for method, choice in choices.items():
        assert choice["metric"] == "val_balanced_accuracy" and choice["seeds"] == [7]
        means = [c["mean"] for c in choice["candidates"]]
        assert choice["chosen"]["index"] == means.index(max(means))
    # the tuning runs scored the validation split, which the evaluation runs never trained on
    tuning_run = json.loads((workdir / "results/tuning/runs/digits/lt10-dir1/fedakd/c0/seed7/metrics.json").read_text())
    assert "val_balanced_accuracy" in tuning_run["history"][-1] and tuning_run["job"]["seed"] == 7

    tuned = mlflow_params(workdir, "tuned-smoke")  # the evaluation runs carry the chosen options
    for seed in (0, 1):
        for method in ("fedprox", "fedakd"):
            chosen = choices[method]["chosen"]["options"]
            params = tuned[f"digits/lt10-dir1/{method}/seed{seed}"]
            assert all(params[f"method_options.{k}"] == str(v) for k, v in chosen.items())
    assert len(mlflow_params(workdir, "tuned-smoke-tuning")) == 5  # the tuning stage's own experiment
    assert "### Tuning" in (workdir / "reports" / "report.md").read_text()
    assert (workdir / "results" / "tables" / "tuning.csv").exists()

    # the bundle carries the tuning runs and choices: on another machine, restored, nothing is tuned or trained again
    from fedakd.cli import main
    from fedakd.publish import bundle_progress, check_bundle

    bundle = tmp_path / "published" / "tuned"
    assert main(["publish", "--config", str(configfile), "--results", str(workdir), "--out", str(bundle)]) == 0
    assert bundle_progress(bundle) == "5 of 5 tuning runs and 6 of 6 runs finished"
    assert len(list((bundle / "tuning").glob("*/*/*.json"))) == 3 and check_bundle(bundle)["complete"]
    # the choices made again from the bundle's tuning runs are the pipeline's; a config that carries them as its
    # setting's method_options (fedakd choices --bundle, pasted) runs each evaluation job exactly as the tuned study
    # ran it, with no tuning stage or folder; one that does not is told which option to set
    from fedakd.config import job_spec
    from fedakd.publish import bundle_choices, choice_problems, choices_yaml

    assert {key[2]: record["chosen"] for key, record in bundle_choices(bundle).items()} == \
        {method: choice["chosen"] for method, choice in choices.items()}
    written = tuned_smoke()
    del written["tune"]
    untuned = validate_config(written)
    written["settings"]["lt10-dir1"].update(yaml.safe_load("settings:\n" + choices_yaml(bundle))["settings"]["lt10-dir1"])
    config = validate_config(written)
    assert choice_problems(bundle, config) == [] and main(["choices", "--bundle", str(bundle), "--check",
                                                            str(_dump(written, tmp_path / "written.yaml"))]) == 0
    for seed in (0, 1):
        for method in ("fedavg", "fedprox", "fedakd"):
            ran = json.loads((workdir / f"results/runs/digits/lt10-dir1/{method}/seed{seed}/metrics.json").read_text())
            assert job_spec(config, dataset="digits", setting="lt10-dir1", method=method, seed=seed).digest == \
                ran["job_digest"]
    problems = choice_problems(bundle, untuned)  # one per method whose choice is not its configured option
    differ = [method for method in ("fedakd", "fedprox") if any(
        untuned["methods"][method][key] != value for key, value in choices[method]["chosen"]["options"].items())]
    assert differ and [problem.split(":")[0] for problem in problems] == \
        [f"settings.lt10-dir1.method_options.{method}" for method in differ]
    assert main(["choices", "--bundle", str(bundle), "--check", str(_dump(untuned, tmp_path / "untuned.yaml"))]) == 1

    elsewhere = tmp_path / "elsewhere"
    assert snakemake(elsewhere, "--until", "partition", configfile=configfile).returncode == 0
    assert main(["restore", "--bundle", str(bundle), "--config", str(configfile), "--results", str(elsewhere)]) == 0
    assert not {"tune_train", "tune_select", "train"} & set(job_counts(snakemake(elsewhere, "-n", configfile=configfile)))
    assert (elsewhere / "results/tuning/digits/lt10-dir1/fedakd.json").read_bytes() == \
        (workdir / "results/tuning/digits/lt10-dir1/fedakd.json").read_bytes()

    # a new grid for fedprox reruns fedprox's tuning, choice and evaluation jobs, and nothing of the others
    changed = tuned_smoke()
    changed["tune"]["methods"]["fedprox"]["mu"] = [0.001, 0.5]
    configfile.write_text(yaml.safe_dump(changed))
    plan = snakemake(workdir, "-n", configfile=configfile)
    assert job_counts(plan) == {"tune_train": 1, "tune_select": 1, "train": 2, "track_tuning": 1, "track": 1,
                                "aggregate": 1, "figures": 1, "write_report": 1, "mlflow_summary": 1, "all": 1}
    import re

    planned = output(plan)
    retrained = set(re.findall(r"output: results/runs/digits/lt10-dir1/([\w-]+)/seed\d/metrics.json", planned))
    retuned = set(re.findall(r"output: results/tuning/runs/digits/lt10-dir1/([\w-]+/c\d)/seed7/", planned))
    assert retrained == {"fedprox"} and retuned == {"fedprox/c0"}
