"""Published bundles (fedakd.publish, fedakd.verify): publish the smoke study, regenerate its paper from the bundle
alone, refuse a changed bundle, verify a rerun, import into MLflow twice, carry an unfinished study to the next
machine."""

import json
import lzma
import shutil
from pathlib import Path

import pytest

from fedakd.cli import main
from fedakd.publish import BundleError, RUN_ENTRY, check_bundle, write_manifest
from tests.test_pipeline import REPO, SMOKE, job_counts, output, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(smoke_run, tmp_path_factory):
    workdir, first = smoke_run
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path_factory.mktemp("published") / "smoke"
    assert main(["publish", "--config", str(SMOKE), "--results", str(workdir), "--out", str(out)]) == 0
    return out


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "smoke"
    shutil.copytree(bundle, copy)
    return copy


def test_the_paper_regenerates_from_the_bundle_alone_with_identical_tables(smoke_run, bundle, tmp_path):
    workdir, _ = smoke_run
    study = check_bundle(bundle)
    assert study["jobs"] == 80 and study["training_machines"][0]["torch_threads"] == 1
    assert sum(p.stat().st_size for p in bundle.rglob("*")) < 10e6
    paper = tmp_path / "paper"
    assert main(["unpack", "--bundle", str(bundle), "--out", str(paper)]) == 0
    made = snakemake(paper, "--config", f"published={bundle}", "--allowed-rules", "aggregate", "figures",
                     "write_report", "--forcerun", "aggregate", "--", "reports/report.md",
                     configfile=paper / "config.yaml")
    assert made.returncode == 0, output(made)[-3000:]
    assert "train" not in output(made).split("Job stats:")[1].split("\n\n")[0]  # nothing trained
    tables = sorted((workdir / "results" / "tables").iterdir())
    assert len(tables) == 18  # summary, comparison, ladder, cost, across, steps x csv, md, tex
    for table in tables:
        assert (paper / "results" / "tables" / table.name).read_bytes() == table.read_bytes(), table.name
    report = (paper / "reports" / "report.md").read_text()
    assert report.startswith("# fedakd-bench report: fedakd-bench-smoke") and "## Verdict" in report
    assert sorted(p.name for p in (paper / "reports" / "figures").iterdir()) == \
        sorted(p.name for p in (workdir / "reports" / "figures").iterdir())
    # the verdict's opening sentences drawn again from the bundle alone are the report's (the README quotes them)
    from fedakd.publish import bundle_verdict

    sentences = bundle_verdict(bundle)
    assert sentences.startswith("On balanced accuracy") and f"\n\n{sentences}\n\n" in report
    # the bundle's overview figure (the README's) is the one the paper draws again, byte for byte
    overview = "verdict_overview_digits.png"
    assert (bundle / "figures" / overview).read_bytes() == (paper / "reports" / "figures" / overview).read_bytes()
    html = snakemake(paper, "--config", f"published={bundle}", "--report", str(paper / "reports" / "report.html"),
                     configfile=paper / "config.yaml")
    assert html.returncode == 0 and "Report created" in output(html), output(html)[-3000:]


@pytest.mark.parametrize("change, named", [
    (lambda b: (b / "config.yaml").write_text((b / "config.yaml").read_text().replace("rounds: 3", "rounds: 4")),
     "config.yaml does not match"),
    (lambda b: (b / "tables" / "extra.csv").write_text("a\n1\n"), "extra.csv is not in the bundle's SHA256SUMS"),
    (lambda b: (b / "partitions" / "digits" / "lt10-dir1" / "seed0.json").unlink(), "seed0.json is missing"),
])
def test_a_changed_bundle_is_refused_naming_the_file(bundle, tmp_path, capsys, change, named):
    copy = _copy(bundle, tmp_path)
    change(copy)
    with pytest.raises(BundleError, match=named):
        check_bundle(copy)
    assert main(["unpack", "--bundle", str(copy), "--out", str(tmp_path / "out")]) == 2
    assert named in capsys.readouterr().err and not (tmp_path / "out" / "results").exists()


def test_verify_is_bit_for_bit_on_this_machine_and_fails_on_an_altered_resealed_value(bundle, tmp_path, capsys):
    job = "digits/lt10-dir1/fedakd/seed1"
    assert main(["verify", "--bundle", str(bundle), "--job", job]) == 0
    assert f"| {job} |" in capsys.readouterr().out.replace("same kind | bit-for-bit", "OK")
    assert main(["verify", "--bundle", str(bundle), "--job", job, "--rounds", "2"]) == 0
    assert "balanced accuracy at round 2" in capsys.readouterr().out

    copy = _copy(bundle, tmp_path)
    entry = copy / RUN_ENTRY.format(dataset="digits", setting="lt10-dir1", method="fedakd", seed=1)
    run = json.loads(lzma.decompress(entry.read_bytes()))
    for record in (run["metrics"]["history"][-1], run["metrics"]["final"]):  # a whole record, one value edited
        record["balanced_accuracy"] += 0.001
    entry.write_bytes(lzma.compress(json.dumps(run).encode()))
    with pytest.raises(BundleError, match="seed1.json.xz does not match"):
        check_bundle(copy)
    write_manifest(copy)  # resealed: the bundle checks, the rerun does not agree
    assert main(["verify", "--bundle", str(copy), "--job", job]) == 1
    assert "0 of 1 jobs agree" in capsys.readouterr().out


def test_importing_a_bundle_into_mlflow_twice_gives_one_run_per_job(bundle, tmp_path):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):
        assert main(["ui-import", "--bundle", str(bundle), "--out", str(tmp_path / "paper"), "--tracking-uri",
                     store]) == 0
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("fedakd-bench-smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    keys = [run.data.tags["job_key"] for run in runs]
    assert len(keys) == len(set(keys)) == 80 and all(run.info.status == "FINISHED" for run in runs)
    assert all("collapsed" in run.data.tags and "diverged" in run.data.tags for run in runs)  # the failure flags


def test_publish_refuses_an_unfinished_study(tmp_path):
    with pytest.raises(BundleError, match="have no finished run"):
        from fedakd.publish import publish

        publish(REPO / "config" / "smoke.yaml", results_root=tmp_path, out=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_the_readme_quotes_each_published_verdict_as_its_bundle_gives_it():
    import re

    from fedakd.publish import bundle_verdict

    readme = (REPO / "README.md").read_text()
    quoted = re.findall(r"<!-- verdict: published/(\S+) -->\n(.*?)\n<!-- /verdict -->", readme, flags=re.S)
    published = sorted(p.parent.name for p in (REPO / "published").glob("*/SHA256SUMS")
                       if check_bundle(p.parent).get("complete", True))  # an unfinished study has no verdict yet
    assert sorted(study for study, _ in quoted) == published  # every finished bundle quoted, nothing else
    for study, text in quoted:
        assert " ".join(text.split()) == bundle_verdict(REPO / "published" / study), study


def test_an_unfinished_study_travels_in_its_bundle_and_the_pipeline_trains_only_what_is_missing(smoke_run, tmp_path,
                                                                                                capsys):
    from fedakd.publish import bundle_verdict, publish

    workdir, first = smoke_run
    assert first.returncode == 0, first.stderr[-3000:]
    machine_a = tmp_path / "a"  # the first machine: three runs are not finished yet
    shutil.copytree(workdir / "results", machine_a / "results", ignore=shutil.ignore_patterns("*.pt", "mlflow*"))
    unfinished = ["digits/lt10-dir1/fedakd/seed1", "digits/lt10-dir1/fedavg/seed0", "digits/lt10-dir1-lr0.02/fedakd/seed0"]
    for key in unfinished:
        dataset, setting, method, seed = key.split("/")
        shutil.rmtree(machine_a / "results" / "runs" / dataset / setting / method / seed)
    out = tmp_path / "published" / "smoke"
    with pytest.raises(BundleError, match="3 job.s. of .* have no finished run.*or publish what is finished with --partial"):
        publish(SMOKE, results_root=machine_a, out=out)
    assert main(["publish", "--config", str(SMOKE), "--results", str(machine_a), "--out", str(out), "--partial"]) == 0
    assert "MB: 77 of 80 runs finished)" in capsys.readouterr().out
    study = check_bundle(out)
    assert study["complete"] is False and sorted(study["missing"]) == sorted(unfinished) and study["jobs"] == 77
    assert not (out / "tables").exists() and not (out / "figures").exists()  # an unfinished study has no verdict
    with pytest.raises(BundleError, match=r"unfinished study \(77 of 80 jobs published\)"):
        bundle_verdict(out)
    assert main(["unpack", "--bundle", str(out), "--out", str(tmp_path / "p")]) == 2
    assert "unfinished study (77 of 80 jobs published)" in capsys.readouterr().err

    # the next machine: the pipeline makes the partitions, restore puts the finished runs back, and the pipeline
    # plans only the three missing jobs (and the steps after them)
    machine_b = tmp_path / "b"
    made = snakemake(machine_b, "--until", "partition")
    assert made.returncode == 0, output(made)[-3000:]
    assert main(["restore", "--bundle", str(out), "--config", str(SMOKE), "--results", str(machine_b)]) == 0
    assert "restored 77 runs" in capsys.readouterr().out
    plan = snakemake(machine_b, "-n")
    assert job_counts(plan)["train"] == 3, output(plan)[-3000:]
    for key in unfinished:
        assert f"results/runs/{key}/metrics.json" in output(plan)
    restored = machine_b / "results" / "runs" / "digits" / "lt10-dir1" / "fedakd" / "seed0"
    assert (restored / "metrics.json").read_bytes() == (workdir / restored.relative_to(machine_b) / "metrics.json").read_bytes()
    assert main(["restore", "--bundle", str(out), "--config", str(SMOKE), "--results", str(machine_b)]) == 0
    assert "restored 0 runs into" in (said := capsys.readouterr().out) and "77 were here already" in said

    # a config that no longer runs those specs restores nothing: Snakemake would not retrain a restored run
    assert main(["restore", "--bundle", str(out), "--config", str(SMOKE), "--set", "federation.rounds=4",
                 "--results", str(tmp_path / "c")]) == 0
    assert "restored 0 runs" in (said := capsys.readouterr().out) and "77 not restored, the config no longer" in said
    # publishing over the bundle from results that lack its runs would lose them: refused, the bundle unchanged
    with pytest.raises(BundleError, match="holds 77 finished run.s. that .* lacks"):
        publish(SMOKE, results_root=tmp_path / "c", out=out, partial=True)
    assert check_bundle(out) == study
    # a partition made differently here than the one the runs trained on is refused, naming it
    manifest = machine_b / "results" / "partitions" / "digits" / "lt10-dir1" / "seed0" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"seed": 0', '"seed": 5'))
    shutil.rmtree(machine_b / "results" / "runs")
    with pytest.raises(BundleError, match="seed0/manifest.json is not the partition the bundle's runs trained on"):
        from fedakd.publish import restore

        restore(out, SMOKE, results_root=machine_b)


def test_the_headline_config_runs_the_choices_of_its_published_tuning_stage():
    from fedakd.config import load_config
    from fedakd.publish import bundle_choices, choice_problems

    bundle = REPO / "published" / "converged-tuning"
    config = load_config(REPO / "config" / "converged.yaml")
    if check_bundle(bundle)["tuning_missing"]:  # unfinished: no choice is made yet, and the headline carries none
        with pytest.raises(BundleError, match=r"unfinished tuning stage \(\d+ of 64 tuning runs finished\)"):
            bundle_choices(bundle)
        assert not any("method_options" in setting for setting in config["settings"].values())
    else:
        assert choice_problems(bundle, config) == []


def test_the_readme_states_each_unfinished_bundle_s_progress_as_its_study_file_gives_it():
    import re

    from fedakd.publish import bundle_progress

    readme = (REPO / "README.md").read_text()
    stated = re.findall(r"<!-- progress: published/(\S+) -->(.*?)<!-- /progress -->", readme, flags=re.S)
    unfinished = sorted(p.parent.name for p in (REPO / "published").glob("*/SHA256SUMS")
                        if check_bundle(p.parent).get("complete", True) is False)
    assert sorted(study for study, _ in stated) == unfinished
    for study, text in stated:
        assert " ".join(text.split()) == bundle_progress(REPO / "published" / study), study
