"""The Snakemake workflow: lint, dry runs of the shipped configs, a bad config, and (slow) the smoke
grid end to end, including that a second run has nothing to do and that one deleted run is retrained
alone without leaving a second FINISHED MLflow run behind."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import finished_job_runs, pipeline_experiment

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SMOKE = REPO / "config" / "smoke.yaml"
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall", "worst_class_recall")
REPORT_ONLY = ("report", "--allowed-rules", "track", "aggregate", "figures", "write_report", "mlflow_summary", "report",
               "--forcerun", "aggregate", "figures")


def snakemake(workdir: Path, *args: str, configfile: Path = SMOKE, timeout: float = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
               "--configfile", str(configfile), "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def job_counts(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints for a (dry) run: rule -> number of jobs."""
    text = output(result)
    table = text[text.index("Job stats:"):].split("\n\n")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M) if rule != "total"}


def lints(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"^    \* (.+)$", output(result), flags=re.M))


def test_lint_is_clean(tmp_path):
    # Every rule that runs Python names the conda environment of workflow/envs/ (used with --sdm conda).
    result = snakemake(tmp_path, "--lint")
    assert result.returncode == 0 and lints(result) == set(), output(result)
    assert "Congratulations, your workflow is in a good condition!" in output(result)


def test_the_rules_conda_environment_holds_the_packages_dependencies():
    import tomllib

    import yaml

    from tests.test_packaging import CONDA_NAMES, _name_and_spec

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {CONDA_NAMES.get(n, n): s for n, s in map(_name_and_spec, project["dependencies"])}
    env = yaml.safe_load((REPO / "workflow" / "envs" / "fedakd.yaml").read_text())
    found = dict(_name_and_spec(d) for d in env["dependencies"] if isinstance(d, str) and not d.startswith("python"))
    assert found == wanted


@pytest.mark.parametrize(("config_name", "train_jobs", "partitions", "settings"), [
    ("smoke.yaml", 1 * 2 * 20 * 2, 1 * 1 * 2, 2),        # digits x (1 setting + 1 step of it) x 20 methods x 2 seeds;
                                                         # the step setting trains on its base's partitions
    ("config.yaml", 1 * 2 * 10 * 5, 1 * 2 * 5, 2),       # fashion-mnist x 2 settings x 10 methods x 5 seeds
    ("paper.yaml", 2 * 12 * 22 * 5, 2 * 12 * 5, 2 * 12),  # 2 datasets x (4 factors x 3 alphas) x 22 methods x 5 seeds
    ("full.yaml", 1 * 2 * 21 * 5, 1 * 2 * 5, 2),         # fashion-mnist x 2 settings x 21 methods x 5 seeds
    ("tuned.yaml", 1 * 2 * 10 * 5, 1 * 2 * (5 + 2), 2),  # the default grid; partitions of 5 + 2 tuning seeds
])
def test_dry_run_plans_one_train_job_per_grid_point(tmp_path, config_name, train_jobs, partitions, settings):
    result = snakemake(tmp_path, "-n", configfile=REPO / "config" / config_name)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result)
    assert counts["train"] == train_jobs
    assert counts["partition"] == partitions
    tuned = config_name == "tuned.yaml"  # 2 settings x (9 methods x 4 candidates + fedavg's 1) x 2 tuning seeds
    assert counts.get("tune_train", 0) == (2 * 37 * 2 if tuned else 0)
    assert counts.get("tune_select", 0) == (2 * 10 if tuned else 0)
    assert counts["track"] == settings and counts.get("track_tuning", 0) == (settings if tuned else 0)
    assert counts["mlflow_setup"] == counts["aggregate"] == counts["figures"] == counts["write_report"] == 1
    assert counts["mlflow_summary"] == 1


def test_bad_config_stops_before_any_job_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("alpha: 1.0", "alpha: -0.5"))
    assert "alpha: -0.5" in bad.read_text()
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, configfile=bad)
    assert result.returncode != 0
    assert "settings.lt10-dir1.split.alpha" in result.stderr and "-0.5" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "results").exists()


def finished_runs_per_job(workdir: Path) -> Counter:
    return Counter(run.data.tags["job_key"] for run in finished_job_runs(workdir, "fedakd-bench-smoke"))


def summary_run(workdir: Path):
    """The study's one (active) summary run and its artifacts' paths."""
    from fedakd.tracking import SUMMARY_TAG

    client, experiment_id = pipeline_experiment(workdir, "fedakd-bench-smoke")
    [run] = client.search_runs([experiment_id], filter_string=f"tags.`{SUMMARY_TAG}` = 'true'")
    paths = {item.path for folder in ("tables", "figures", "report") for item in client.list_artifacts(run.info.run_id,
                                                                                                        folder)}
    return run, paths


def smoke_methods() -> list[str]:
    import yaml

    return list(yaml.safe_load(SMOKE.read_text())["methods"])


def test_the_smoke_grid_holds_every_registered_method():
    import yaml

    from fedakd.registry import method_names

    classes = {spec["method"] for spec in yaml.safe_load(SMOKE.read_text())["methods"].values()}
    assert set(method_names()) <= classes


SMOKE_SETTINGS = ("lt10-dir1", "lt10-dir1-lr0.02")  # the second repeats the first at lr 0.02 (step_of)


def smoke_jobs() -> set[str]:
    return {f"digits/{setting}/{method}/seed{seed}" for setting in SMOKE_SETTINGS for method in smoke_methods()
            for seed in (0, 1)}


@pytest.mark.slow
def test_smoke_pipeline_end_to_end(smoke_run):
    tmp_path, first = smoke_run
    methods = smoke_methods()
    expected_jobs = smoke_jobs()
    assert first.returncode == 0, first.stderr[-3000:]

    import pandas as pd

    tables = tmp_path / "results" / "tables"
    summary = pd.read_csv(tables / "summary.csv")
    for metric in HEADLINE:
        for statistic in ("mean", "std", "ci_low", "ci_high"):
            assert f"{metric}_{statistic}" in summary.columns
    for setting in SMOKE_SETTINGS:
        assert sorted(summary[summary["setting"] == setting]["method"]) == sorted(methods)
    headline = summary[summary["setting"] == "lt10-dir1"].set_index("method")
    assert (summary["n_seeds"] == 2).all() and headline.loc["centralised", "reference"]
    for table in ("summary", "comparison", "ladder", "cost", "steps"):
        for ext in ("csv", "md", "tex"):
            assert (tables / f"{table}.{ext}").stat().st_size > 0
    comparison = pd.read_csv(tables / "comparison.csv")
    # every method against fedavg, fedakd against every other (centralised, a reference, in neither)
    others = [m for m in methods if m not in ("centralised",)]
    expected_pairs = {(m, "fedavg") for m in others if m != "fedavg"} | {("fedakd", m) for m in others
                                                                        if m not in ("fedakd", "fedavg")}
    assert set(zip(comparison["method"], comparison["baseline"])) == expected_pairs
    assert comparison["ttest_p_holm"].dropna().ge(comparison["ttest_p"].dropna().min()).all()
    ladder = pd.read_csv(tables / "ladder.csv")
    assert list(dict.fromkeys(zip(ladder["from_method"], ladder["to_method"]))) == [
        ("fedavg", "fedavg-ft"), ("fedavg-ft", "fedakd-noattn"), ("fedakd-noattn", "fedakd")]
    cost = pd.read_csv(tables / "cost.csv").query("setting == 'lt10-dir1'").set_index("method")
    assert cost.loc["fedavg-smote", "local_steps"] > cost.loc["fedavg", "local_steps"]
    assert cost.loc["fedakd", "bytes_up"] > cost.loc["fedavg", "bytes_up"] and cost.loc["fedakd", "server_steps"] > 0
    assert (cost["wall_seconds"] > 0).all()
    # the verdict across step sizes: fedakd against each rival at effective steps 0.2 (lr 0.02) and 0.5 (lr 0.05)
    step_table = pd.read_csv(tables / "steps.csv")
    assert sorted(set(step_table["step"].round(6))) == [0.2, 0.5] and set(step_table["method"]) == {"fedakd"}
    assert set(step_table["baseline"]) == set(others) - {"fedakd"} and step_table["verdict"].notna().all()
    assert "step 0.2 (lr 0.02)" in (tables / "steps.md").read_text()

    figures = tmp_path / "reports" / "figures"
    pngs = sorted(figures.glob("*.png"))
    assert pngs and all(png.with_suffix(".pdf").exists() for png in pngs)
    report = tmp_path / "reports" / "report.md"
    text = report.read_text()
    assert text.split("\n")[2] == "## Verdict" and "Holm-adjusted" in text and "### Ablation ladder" in text
    linked = re.findall(r"\]\((figures/[^)]+)\)", text)
    assert linked and all((report.parent / link).exists() for link in linked)
    # the verdict opens with the forest plot; the critical-difference diagram is among the figures
    verdict = text.split("## Verdict")[1].split("## How the verdict is drawn")[0]
    assert "](figures/forest_digits_lt10-dir1.png)" in verdict
    assert "figures/critical_difference_digits.png" in linked and "**Power:**" in text
    assert "](figures/steps_digits_lt10-dir1.png)" in verdict and "effective client steps 0.2, 0.5" in verdict
    # it opens with the overview over every setting; each setting's part is at most 3 sentences and 1 table
    assert verdict.split("###")[0].strip().startswith("![fedakd against each rival in every setting, digits]"
                                                      "(figures/verdict_overview_digits.png)")
    for part in verdict.split("\n### digits / ")[1:]:
        sentences, table_count = verdict_size(part.split("### Across client step sizes")[0])
        assert sentences <= 3 and table_count <= 1, part
    assert verdict_size(verdict.split("###")[0]) <= (3, 0)

    assert finished_runs_per_job(tmp_path) == Counter(expected_jobs)
    run, artifacts = summary_run(tmp_path)
    assert run.info.status == "FINISHED" and run.info.run_name == "summary | tables, figures and report"
    assert {"tables/summary.csv", "tables/comparison.md", "report/report.md"} <= artifacts
    assert {f"figures/{png.name}" for png in pngs} <= artifacts
    assert "Nothing to be done" in output(snakemake(tmp_path, "-n"))

    # Snakemake's own HTML report: tables, report and figures by dataset, then setting (or all settings).
    html = tmp_path / "reports" / "report.html"
    built = snakemake(tmp_path, "--report", str(html))
    assert built.returncode == 0 and "Report created" in output(built), output(built)[-3000:]
    page = html.read_text()
    for name in ("Figures: digits", "lt10-dir1", "all settings", '"Tables"', '"Report"', "minority_vs_imbalance",
                 "verdict_overview",
                 "per_class_recall", "seed 1", "forest", "critical_difference"):
        assert name in page, name


def verdict_size(part: str) -> tuple[int, int]:
    """(sentences, tables) of one part of the verdict: the sentences of its prose (not a figure, a table or the
    table's italic note), and its Markdown tables."""
    lines = [line for line in part.split("\n")[1:] if line.strip()]
    prose = " ".join(line for line in lines if not line.startswith(("![", "|", "*")))
    tables = sum(1 for a, b in zip(lines, lines[1:]) if b.startswith("|---"))
    return len(re.findall(r"[.!?](?:\s|$)", prose)), tables


@pytest.mark.slow
def test_rebuilding_and_rerunning_touch_only_what_changed(smoke_run):
    tmp_path, first = smoke_run
    assert first.returncode == 0, first.stderr[-3000:]
    expected_jobs = smoke_jobs()
    report_only = snakemake(tmp_path, *REPORT_ONLY)
    assert report_only.returncode == 0, report_only.stderr[-3000:]
    assert job_counts(report_only) == {"aggregate": 1, "figures": 1, "write_report": 1, "mlflow_summary": 1,
                                       "report": 1}
    summary_run(tmp_path)  # one summary run still: the rebuilt one supersedes the old

    deleted = tmp_path / "results" / "runs" / "digits" / "lt10-dir1" / "fedakd" / "seed1" / "metrics.json"
    deleted.unlink()
    missing = snakemake(tmp_path, *REPORT_ONLY, "-n")
    assert missing.returncode != 0
    assert "MissingInputException" in output(missing) and str(deleted.relative_to(tmp_path)) in output(missing)

    plan = snakemake(tmp_path, "-n")
    assert job_counts(plan) == {"train": 1, "track": 1, "aggregate": 1, "figures": 1, "write_report": 1,
                                "mlflow_summary": 1, "all": 1}
    assert "results/runs/digits/lt10-dir1/fedakd/seed1/metrics.json" in output(plan)

    # A by-hand run of one of the pipeline's jobs into another folder (the README's example) is a run of its
    # own: the pipeline's run of that job stays FINISHED and the aggregate step still passes.
    from fedakd.cli import main as fedakd_main
    from tests.helpers import run_id

    pipeline_run = run_id(tmp_path / "results" / "runs" / "digits" / "lt10-dir1" / "fedavg" / "seed0")
    config = tmp_path / "hand.yaml"
    config.write_text(SMOKE.read_text().replace("sqlite:///results/mlflow.db",
                                                f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"))
    assert fedakd_main(["train", "--config", str(config), "--dataset", "digits", "--setting", "lt10-dir1",
                        "--method", "fedavg", "--seed", "0", "--out", str(tmp_path / "by-hand")]) == 0
    client, _ = pipeline_experiment(tmp_path, "fedakd-bench-smoke")
    assert client.get_run(pipeline_run).info.lifecycle_stage == "active"
    assert run_id(tmp_path / "by-hand") != pipeline_run
    # as far as the aggregate step, which cross-checks MLflow, now with the hand run in (the steps after it were
    # rebuilt above; their figures take most of a rebuild's time)
    rerun = snakemake(tmp_path, "--until", "aggregate")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert job_counts(rerun) == {"train": 1, "track": 1, "aggregate": 1}
    assert deleted.exists()
    assert finished_runs_per_job(tmp_path) == Counter(expected_jobs) + Counter(["digits/lt10-dir1/fedavg/seed0"])
    assert client.get_run(pipeline_run).info.status == "FINISHED"

    # A changed method option reruns that method's jobs only (the train rule's params are its job spec): 2 seeds
    # in each of the 2 settings.
    changed = tmp_path / "changed.yaml"
    changed.write_text(SMOKE.read_text().replace("fedakd: {method: fedakd, distill_steps: 10}",
                                                 "fedakd: {method: fedakd, distill_steps: 11}"))
    assert changed.read_text() != SMOKE.read_text()
    plan = snakemake(tmp_path, "-n", configfile=changed)
    assert job_counts(plan) == {"train": 4, "track": 2, "aggregate": 1, "figures": 1, "write_report": 1,
                                "mlflow_summary": 1, "all": 1}
    # A step setting's own step reruns its jobs only, never its base's.
    stepped = tmp_path / "stepped.yaml"
    stepped.write_text(SMOKE.read_text().replace("federation: {lr: 0.02}", "federation: {lr: 0.03}"))
    assert stepped.read_text() != SMOKE.read_text()
    plan = snakemake(tmp_path, "-n", configfile=stepped)
    assert job_counts(plan)["train"] == 2 * len(smoke_methods()) and job_counts(plan)["track"] == 1
    assert "output: results/mlflow/runs/digits/lt10-dir1-lr0.02.json" in output(plan)  # the one setting retracked
