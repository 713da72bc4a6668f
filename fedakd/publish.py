"""A study's published bundle (docs/method-card.md §5, published results): what the report is made from, small
enough for git, sealed by a SHA-256 manifest, and the way back from it to a results tree that the pipeline's
aggregate, figures and report steps read (``make paper``), that MLflow imports (``make ui``) and that
``fedakd verify`` retrains against.

published/<study>/
    SHA256SUMS                        sha256sum's format, every other file of the bundle, sorted
    study.json                        the study, its config's digest, the code commit, the machines, the jobs
    config.yaml                       the resolved config (every default filled) the jobs ran
    runs/<dataset>/<setting>/<method>/seed<S>.json.xz
                                      one run: its metrics.json, timings.json and job spec (artifacts/job.json)
    partitions/<dataset>/<setting>/seed<S>.json    each partition's manifest (its indices' SHA-256 inside)
    tuning/<dataset>/<setting>/<method>.json       the tuning choices, for a tuned study
    tuning/runs/<dataset>/<setting>/<method>/c<K>/seed<S>.json.xz
                                      the tuning runs the choices were made from, as a run is packed
    tables/<name>.csv                 the pipeline's own tables, which a regenerated paper must equal
    figures/verdict_overview_<dataset>.png   the verdict's overview figure, for the README

A bundle is refused whole when a file differs from its manifest, is missing, or is not in it; a run inside is
checked as every metrics.json is (fedakd.record.RunRecord) before it enters a results tree.

An unfinished study (``publish --partial``) is published the same way, with no tables or figures and its missing
jobs listed in study.json: a study of many CPU-hours is carried from one machine to the next in git, since a
results folder does not travel. ``restore`` puts its runs back into a results tree, each only where the live
config still resolves the same job spec, so that Snakemake trains only what is missing; the paper, the verdict and
the MLflow import refuse such a bundle until it is whole.
"""

from __future__ import annotations

import json
import lzma
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from fedakd import layout
from fedakd.config.study import step_families
from fedakd.io import atomic_write_json, atomic_write_text, file_sha256, read_json

MANIFEST = "SHA256SUMS"
STUDY_FILE = "study.json"
CONFIG_FILE = "config.yaml"
FORMAT_VERSION = 1
RUN_ENTRY = "runs/{dataset}/{setting}/{method}/seed{seed}.json.xz"
PARTITION_ENTRY = "partitions/{dataset}/{setting}/seed{seed}.json"
TUNING_ENTRY = "tuning/{dataset}/{setting}/{method}.json"
TUNING_RUN_ENTRY = "tuning/runs/{dataset}/{setting}/{method}/c{candidate}/seed{seed}.json.xz"


class BundleError(ValueError):
    """A bundle that cannot be published or read as it is: the message names the file and the fix."""


def study_jobs(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every evaluation job of a validated config: dataset, setting, method, seed."""
    from fedakd.config.study import setting_seeds

    for dataset in config["datasets"]:
        for setting in config["settings"]:
            for method in config["methods"]:
                for seed in setting_seeds(config, setting):
                    yield {"dataset": dataset, "setting": setting, "method": method, "seed": seed}


def tuning_jobs(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every tuning job of a validated config with a tune block (none without): every candidate of every method
    on every tuning seed, in every setting, as the tune_train rule runs them."""
    from fedakd.config.tuning import grid

    if "tune" not in config:
        return
    for dataset in config["datasets"]:
        for setting in config["settings"]:
            for method in config["methods"]:
                for candidate in range(len(grid(config, method))):
                    for seed in config["tune"]["seeds"]:
                        yield {"dataset": dataset, "setting": setting, "method": method, "candidate": candidate,
                               "seed": seed}


def study_partitions(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every partition the jobs train on (a step setting's are its base's)."""
    from fedakd.config.study import setting_seeds

    bases = dict.fromkeys(step_families(config).values())
    for dataset in config["datasets"]:
        for setting in bases:
            for seed in setting_seeds(config, setting):
                yield {"dataset": dataset, "setting": setting, "seed": seed}


def _pack(data: Any) -> bytes:
    """Canonical JSON (sorted keys, no spaces), xz-compressed: the same content gives the same bytes."""
    return lzma.compress(json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), preset=9)


def _unpack(path: Path) -> Any:
    try:
        return json.loads(lzma.decompress(path.read_bytes()))
    except (lzma.LZMAError, ValueError) as exc:
        raise BundleError(f"{path} cannot be read ({exc}); restore the bundle (git checkout) or republish it") from None


def _git_commit(root: Path) -> str:
    """The checkout's commit, with '-dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the checkout when inside it (a bundle names no machine's folders)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def write_manifest(bundle: Path) -> Path:
    """SHA256SUMS over every other file of the bundle (what publish does last)."""
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"{file_sha256(p)}  {p.relative_to(bundle).as_posix()}" for p in files]
    return atomic_write_text(bundle / MANIFEST, "\n".join(lines) + "\n")


def check_bundle(bundle: str | Path) -> dict[str, Any]:
    """The bundle's study.json after every file has been checked against SHA256SUMS; BundleError names the first
    file that differs, is missing, or is not in the manifest."""
    bundle = Path(bundle)
    manifest = bundle / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{bundle} is no published bundle (no {MANIFEST}); publish one with `fedakd publish "
                          f"--config config/<study>.yaml`")
    listed = {}
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise BundleError(f"{manifest} line {number} is not '<sha256>  <file>'; restore the bundle (git "
                              f"checkout {bundle}) or republish it")
        listed[name] = digest
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST}
    fix = f"restore the bundle (git checkout {bundle}) or republish it from its results (fedakd publish)"
    for name in sorted(set(listed) | present):
        path = bundle / name
        if name not in present:
            raise BundleError(f"{path} is missing from the bundle its {MANIFEST} lists; {fix}")
        if name not in listed:
            raise BundleError(f"{path} is not in the bundle's {MANIFEST}: it was added after publishing; remove it "
                              f"or {fix}")
        if file_sha256(path) != listed[name]:
            raise BundleError(f"{path} does not match the bundle's {MANIFEST}: it was changed after publishing; {fix}")
    study = read_json(bundle / STUDY_FILE, "bundle's study file")
    if study.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{bundle / STUDY_FILE} is format_version {study.get('format_version')!r}, this code reads "
                          f"{FORMAT_VERSION}; use the commit that published it ({study.get('commit')})")
    return study


def publish(config_path: str | Path, overrides=(), *, results_root: str | Path = ".", out: str | Path | None = None,
            root: str | Path | None = None, partial: bool = False) -> Path:
    """Write the bundle of the finished pipeline of ``config_path`` (its runs under ``results_root``) to
    ``out`` (default published/<config's stem>); every job must be finished and whole, unless ``partial``: then
    the finished runs are published, the missing jobs listed, and no tables or figures written. A partial publish
    over an earlier bundle refuses to drop a run that bundle holds and the results lack (restore it first). The
    bundle is built in a temporary folder and moved into place, so a refused or interrupted publish leaves the
    old one as it was."""
    from fedakd.config import load_config

    config = load_config(config_path, overrides)
    results_root = Path(results_root)
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    out = Path(out) if out is not None else root / "published" / Path(config_path).stem
    runs, missing = _finished_runs(study_jobs(config), layout.RUN_DIR, results_root)
    if missing and not partial:
        raise BundleError(f"{len(missing)} job(s) of {config_path} have no finished run under {results_root}: "
                          f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}; finish the pipeline "
                          f"(snakemake --configfile {config_path}) before publishing, or publish what is finished "
                          f"with --partial")
    tuning_runs, tuning_missing = _finished_runs(tuning_jobs(config), layout.TUNING_RUN_DIR, results_root)
    if partial and (out / MANIFEST).exists():
        _refuse_to_drop(out, {layout.job_key(job) for job, _ in runs + tuning_runs}, results_root)
    tmp = out.with_name(f".{out.name}.publishing")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_contents(tmp, config, runs, tuning_runs, results_root, whole=not missing)
    import yaml

    from fedakd.config import config_digest
    from fedakd.machine import machine_info

    machines = {json.dumps(run["timings"].get("machine"), sort_keys=True): run["timings"].get("machine")
                for _, run in runs + tuning_runs}
    atomic_write_text(tmp / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    atomic_write_json(tmp / STUDY_FILE, {
        "format_version": FORMAT_VERSION, "study": out.name, "config": _relative(Path(config_path), root),
        "config_digest": config_digest(config), "commit": _git_commit(root), "jobs": len(runs),
        "complete": not missing, "missing": missing, "tuning_jobs": len(tuning_runs),
        "tuning_missing": tuning_missing,
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "publisher_machine": machine_info(),
        "training_machines": [m for m in machines.values() if m] or "not recorded by these runs",
    })
    write_manifest(tmp)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out


def _read_run(folder: Path) -> dict[str, Any]:
    """A finished run folder as a bundle packs it: its checked metrics, timings and job spec."""
    from fedakd.record import RunRecord

    return {"metrics": RunRecord.load(folder / layout.METRICS_FILE),
            "timings": read_json(folder / layout.TIMINGS_FILE, "timings file"),
            "job": read_json(folder / layout.ARTIFACTS_DIR / "job.json", "job spec")}


def _finished_runs(jobs, pattern: str, results_root: Path) -> tuple[list[tuple[dict, dict]], list[str]]:
    """(job, run) of every finished job (``pattern``: the run folder's layout), each checked, and the keys of
    the jobs without a finished run."""
    runs, missing = [], []
    for job in jobs:
        folder = results_root / pattern.format(**job)
        if (folder / layout.METRICS_FILE).exists():
            runs.append((job, _read_run(folder)))
        else:
            missing.append(layout.job_key(job))
    return runs, missing


def _refuse_to_drop(bundle: Path, finished: set[str], results_root: Path) -> None:
    """BundleError when the bundle already at ``bundle`` holds runs that the results under ``results_root``
    lack: publishing over it would lose them."""
    check_bundle(bundle)
    lost = [key for key, _ in bundle_runs(bundle, tuning=True) if key not in finished]
    if lost:
        raise BundleError(f"{bundle} holds {len(lost)} finished run(s) that {results_root / 'results'} lacks "
                          f"({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}); publishing over it would "
                          f"lose them: restore them first (fedakd restore --bundle {bundle} --config <study>)")


def _write_contents(tmp: Path, config: dict[str, Any], runs: list[tuple[dict, dict]],
                    tuning_runs: list[tuple[dict, dict]], results_root: Path, *, whole: bool) -> None:
    """The runs, tuning runs, partition manifests and tuning choices into the bundle being built; the
    pipeline's tables and the overview figure only for a ``whole`` study (an unfinished one has none of its
    own)."""
    for pattern, finished in ((RUN_ENTRY, runs), (TUNING_RUN_ENTRY, tuning_runs)):
        for job, run in finished:
            entry = tmp / pattern.format(**job)
            entry.parent.mkdir(parents=True, exist_ok=True)
            entry.write_bytes(_pack(run))
    families = step_families(config)  # an evaluation run trains on its family's partition, a tuning run on its own
    used = {(job["dataset"], families[job["setting"]], job["seed"]) for job, _ in runs}
    used |= {(job["dataset"], job["setting"], job["seed"]) for job, _ in tuning_runs}
    if whole:
        used |= {(part["dataset"], part["setting"], part["seed"]) for part in study_partitions(config)}
    for dataset, setting, seed in sorted(used):
        part = {"dataset": dataset, "setting": setting, "seed": seed}
        source = results_root / layout.PARTITION_DIR.format(**part) / layout.MANIFEST_FILE
        atomic_write_json(tmp / PARTITION_ENTRY.format(**part), read_json(source, "partition manifest"))
    if "tune" in config:  # one choice per dataset, setting and method, whatever the seeds
        for job in {(j["dataset"], j["setting"], j["method"]): j for j in study_jobs(config)}.values():
            choice = results_root / layout.TUNING_CHOICE.format(**job)
            if whole or choice.exists():
                atomic_write_json(tmp / TUNING_ENTRY.format(**job), read_json(choice, "tuning choice"))
    if not whole:
        return
    for table in sorted((results_root / layout.TABLES_DIR).glob("*.csv")):
        (tmp / "tables").mkdir(exist_ok=True)
        shutil.copyfile(table, tmp / "tables" / table.name)
    # the verdict's overview figure, for a page (the README) that shows the answer without regenerating it
    for figure in sorted((results_root / layout.FIGURES_DIR).glob("verdict_overview_*.png")):
        (tmp / "figures").mkdir(exist_ok=True)
        shutil.copyfile(figure, tmp / "figures" / figure.name)


def bundle_runs(bundle: str | Path, *, tuning: bool = False,
                evaluation: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(job key, run) of every evaluation run of a checked bundle (none without ``evaluation``), and with ``tuning``
    of every tuning run too; a run that is not whole is refused, naming it."""
    from fedakd.record import RunRecord

    bundle = Path(bundle)
    paths = sorted((bundle / "runs").rglob("*.json.xz")) if evaluation else []
    if tuning:
        paths += sorted((bundle / "tuning" / "runs").rglob("*.json.xz"))
    for path in paths:
        run = _unpack(path)
        problems = RunRecord.problems(run.get("metrics") if isinstance(run, dict) else None)
        if problems:
            raise BundleError(f"{path}'s metrics lack {', '.join(problems)}; restore the bundle or republish it")
        yield layout.job_key(run["metrics"]["job"]), run


def require_whole(bundle: str | Path) -> dict[str, Any]:
    """The checked study.json of a bundle whose every job is published; an unfinished one (publish --partial) is
    refused, saying how to finish it."""
    study = check_bundle(bundle)
    if study.get("complete", True) is False:
        missing = len(study["missing"])
        raise BundleError(f"{bundle} is an unfinished study ({study['jobs']} of {study['jobs'] + missing} jobs "
                          f"published): it has no tables or verdict yet. Finish it: fedakd restore --bundle {bundle} "
                          f"--config {study['config']}, run the pipeline, then fedakd publish --config "
                          f"{study['config']}")
    return study


def bundle_progress(bundle: str | Path) -> str:
    """How much of a checked bundle's study is published, in words: what the README says of an unfinished one
    (a test holds the two together). A tuning stage with no evaluation run yet is said by its tuning runs."""
    study = check_bundle(bundle)
    tuning, runs = study.get("tuning_jobs", 0), study["jobs"]
    parts = []
    if tuning or study.get("tuning_missing"):
        parts.append(f"{tuning} of {tuning + len(study['tuning_missing'])} tuning runs")
    if runs or not parts:
        parts.append(f"{runs} of {runs + len(study.get('missing', []))} runs")
    return " and ".join(parts) + " finished"


def bundle_choices(bundle: str | Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The selection record of every (dataset, setting, method) of a bundle's finished tuning stage, made again
    from its tuning runs as the tune_select rule makes it; refused where a choice file the bundle carries says
    otherwise, and for a stage not yet finished."""
    return _tuning_stage(bundle)[2]


def _tuning_stage(bundle: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[tuple[str, str, str], dict]]:
    """(study.json, resolved config, selection records) of a bundle's finished tuning stage (``bundle_choices``),
    the bundle checked once."""
    import yaml

    from fedakd.config.tuning import choose

    bundle = Path(bundle)
    study = check_bundle(bundle)
    config = yaml.safe_load((bundle / CONFIG_FILE).read_text())
    if "tune" not in config:
        raise BundleError(f"{bundle}'s study has no tuning stage (no tune block in its config.yaml)")
    if study.get("tuning_missing"):
        raise BundleError(f"{bundle} holds an unfinished tuning stage ({bundle_progress(bundle)}): its choices are "
                          f"not made yet. Finish it: make resume STUDY={bundle.name} ARGS=\"--until tune_select\", "
                          f"then fedakd publish --config {study['config']} --partial")
    runs: dict[tuple[str, str, str], dict] = {}
    for _, run in bundle_runs(bundle, tuning=True, evaluation=False):
        job = run["metrics"]["job"]
        runs.setdefault((job["dataset"], job["setting"], job["method"]), {})[job["candidate"], job["seed"]] = \
            run["metrics"]
    records = {}
    for (dataset, setting, method), found in sorted(runs.items()):
        record = choose(config, found, dataset=dataset, setting=setting, method=method)
        carried = bundle / TUNING_ENTRY.format(dataset=dataset, setting=setting, method=method)
        if carried.exists() and (said := read_json(carried, "tuning choice")["chosen"]) != record["chosen"]:
            raise BundleError(f"{carried} chose {said['options']}, but its tuning runs choose "
                              f"{record['chosen']['options']}: republish the tuning stage")
        records[dataset, setting, method] = record
    return study, config, records


def choice_problems(bundle: str | Path, config: dict[str, Any]) -> list[str]:
    """Where a validated config does not run the choices of a bundle's finished tuning stage: each chosen option
    must be what that setting's jobs of the method run (its entry with the setting's method_options over it),
    and each tuned method's entry the one the stage tuned. One sentence per problem, naming the key to set."""
    from fedakd.config.study import setting_method_entry

    _, tuned, records = _tuning_stage(bundle)
    problems = []
    for (dataset, setting, method), record in records.items():
        if setting not in config["settings"] or method not in config["methods"]:
            continue
        if config["methods"][method] != tuned["methods"][method]:
            problems.append(f"methods.{method}: {config['methods'][method]} is not the entry the tuning stage tuned "
                            f"({tuned['methods'][method]})")
            continue
        runs = setting_method_entry(config, setting, method)
        wrong = {key: value for key, value in record["chosen"]["options"].items() if runs.get(key) != value}
        if wrong:
            problems.append(f"settings.{setting}.method_options.{method}: its jobs run "
                            f"{ {key: runs.get(key) for key in wrong} }, the tuning stage chose {wrong} on {dataset} "
                            f"(candidate {record['chosen']['index']}, mean {record['metric']} "
                            f"{record['candidates'][record['chosen']['index']]['mean']:.4f})")
    return problems


def choices_yaml(bundle: str | Path) -> str:
    """A finished tuning stage's choices as the ``settings.<name>.method_options`` blocks a config carries them in,
    each with a comment giving every candidate's mean score (and its failed seeds): to paste into the config."""
    study, _, records = _tuning_stage(bundle)
    lines = [f"# The choices of {study['config']}'s tuning stage ({bundle}, fedakd choices --bundle {bundle}):",
             "# per setting, the candidate with the best mean score among those that never failed."]
    for (dataset, setting), group in _grouped(records).items():
        lines += [f"# {dataset}", f"  {setting}:", "    method_options:"]
        for method, record in group:
            if not record["chosen"]["options"]:  # one candidate (nothing tuned): nothing to carry
                continue
            scores = "; ".join(f"{_options_words(c['options'])} {c['mean']:.4f}"
                               + (f" (failed on seed {', '.join(map(str, c['failed_seeds']))})" if c["failed_seeds"]
                                  else "") for c in record["candidates"])
            options = ", ".join(f"{key}: {json.dumps(value)}" for key, value in record["chosen"]["options"].items())
            lines += [f"      # mean {record['metric']} over tuning seeds {', '.join(map(str, record['seeds']))}: "
                      f"{scores}", f"      {method}: {{{options}}}"]
    return "\n".join(lines)


def _grouped(records: dict[tuple[str, str, str], dict]) -> dict[tuple[str, str], list[tuple[str, dict]]]:
    grouped: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for (dataset, setting, method), record in records.items():
        grouped.setdefault((dataset, setting), []).append((method, record))
    return grouped


def _options_words(options: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in options.items()) or "as configured"


def _write_run(folder: Path, run: dict[str, Any], manifest: Path | None) -> None:
    """A run folder as training leaves it (artifacts, timings.json, then metrics.json, which marks it finished);
    the model weights stay out of a bundle."""
    from fedakd.run_artifacts import write_job_files

    (folder / layout.TRACKING_FILE).unlink(missing_ok=True)  # another record: another MLflow run
    write_job_files(folder / layout.ARTIFACTS_DIR, job=run["job"], metrics=run["metrics"], manifest=manifest)
    atomic_write_json(folder / layout.TIMINGS_FILE, run["timings"])
    atomic_write_json(folder / layout.METRICS_FILE, run["metrics"])  # last: it marks the run finished
    (folder / layout.CHECKPOINT_FILE).unlink(missing_ok=True)  # a half-trained attempt's, now superseded


def unpack(bundle: str | Path, workdir: str | Path) -> Path:
    """The results tree of a checked bundle under ``workdir`` (results/runs with each run's artifacts folder as
    training writes it, partitions, tuning, and the config as workdir/config.yaml): what the pipeline's aggregate
    step reads and MLflow imports. A run folder whose metrics.json already holds the same record is left as it
    is (with its MLflow record, so that a second import adds nothing)."""
    require_whole(bundle)
    bundle, workdir = Path(bundle), Path(workdir)
    manifests = {}
    for path in sorted((bundle / "partitions").rglob("*.json")):
        dataset, setting, seed = path.relative_to(bundle / "partitions").with_suffix("").parts
        target = workdir / layout.PARTITION_DIR.format(dataset=dataset, setting=setting, seed=seed[len("seed"):])
        manifests[dataset, setting, int(seed[len("seed"):])] = target / layout.MANIFEST_FILE
        atomic_write_json(target / layout.MANIFEST_FILE, read_json(path, "partition manifest"))
    import yaml

    families = step_families(yaml.safe_load((bundle / CONFIG_FILE).read_text()))
    for _, run in bundle_runs(bundle):
        job = run["metrics"]["job"]
        folder = workdir / layout.RUN_DIR.format(**job)
        metrics_path = folder / layout.METRICS_FILE
        if metrics_path.exists() and read_json(metrics_path, "metrics file") == run["metrics"]:
            continue
        _write_run(folder, run, manifests.get((job["dataset"], families.get(job["setting"]), job["seed"])))
    for path in sorted((bundle / "tuning").glob("*/*/*.json")):
        dataset, setting, method = path.relative_to(bundle / "tuning").with_suffix("").parts
        atomic_write_json(workdir / layout.TUNING_CHOICE.format(dataset=dataset, setting=setting, method=method),
                          read_json(path, "tuning choice"))
    shutil.copyfile(bundle / CONFIG_FILE, workdir / CONFIG_FILE)
    return workdir


def bundle_verdict(bundle: str | Path) -> str:
    """The verdict's opening sentences (fedakd.reporting.report.overview_sentences) drawn again from a checked
    bundle's tables and runs, training nothing: what the README quotes, checked by the tests."""
    import pandas as pd
    import yaml

    from fedakd.config.study import Study
    from fedakd.reporting.report import overview_sentences

    require_whole(bundle)
    bundle = Path(bundle)
    study = Study.from_config(yaml.safe_load((bundle / CONFIG_FILE).read_text()))
    tables = {name: pd.read_csv(bundle / "tables" / f"{name}.csv") for name in ("comparison", "steps")
              if (bundle / "tables" / f"{name}.csv").exists()}
    runs = [run["metrics"] for _, run in bundle_runs(bundle)]
    return " ".join(overview_sentences(tables, study, runs))


def restore(bundle: str | Path, config_path: str | Path, overrides=(), *,
            results_root: str | Path = ".") -> dict[str, list[str]]:
    """Put a bundle's finished runs (evaluation and tuning) back into the results tree under ``results_root``, so
    that the pipeline of ``config_path`` trains only what is missing: how an unfinished study goes on from one
    machine to the next. A run is restored only where the live config resolves the same job spec it ran (else
    'stale': Snakemake retrains it) and its partition, made here by the pipeline first, is the bundle's (else
    BundleError). A finished run already here is kept ('here': the same record; 'kept': another one, which the
    next publish takes). Returns those four lists of job keys."""
    from fedakd.config import load_config

    check_bundle(bundle)
    bundle, results_root = Path(bundle), Path(results_root)
    config = load_config(config_path, overrides)
    choices = {}  # what each evaluation job of a tuned study will run: the choice here, else the bundle's
    for path in sorted((bundle / "tuning").glob("*/*/*.json")) if "tune" in config else ():
        dataset, setting, method = path.relative_to(bundle / "tuning").with_suffix("").parts
        if setting in config["settings"] and method in config["methods"]:
            target = results_root / layout.TUNING_CHOICE.format(dataset=dataset, setting=setting, method=method)
            choices[dataset, setting, method] = (target, path)
    plan, stale = _restore_plan(bundle, config, results_root, choices)
    outcome: dict[str, list[str]] = {"restored": [], "here": [], "kept": [], "stale": stale}
    manifests = _restorable_partitions(bundle, results_root, {part for *_, part in plan}, config_path)

    def put(entries):
        for key, folder, run, part in entries:
            metrics_path = folder / layout.METRICS_FILE
            if metrics_path.exists():
                here = read_json(metrics_path, "metrics file") == run["metrics"]
                outcome["here" if here else "kept"].append(key)
            else:
                _write_run(folder, run, manifests[part])
                outcome["restored"].append(key)

    put([entry for pattern, *entry in plan if pattern == layout.TUNING_RUN_DIR])
    for target, path in choices.values():  # after the tuning runs, before the runs that read them (mtimes)
        if not target.exists():
            atomic_write_json(target, read_json(path, "tuning choice"))
    put([entry for pattern, *entry in plan if pattern == layout.RUN_DIR])
    return outcome


def _restore_plan(bundle: Path, config: dict[str, Any], results_root: Path,
                  choices: dict) -> tuple[list[tuple], list[str]]:
    """(folder pattern, job key, folder, run, partition) of every bundled run whose spec the live config resolves
    exactly as it ran (an evaluation job of a tuned study with the choice it will read, ``choices``), and the keys
    of the others."""
    from fedakd.config import job_spec
    from fedakd.config.tuning import tuning_spec, with_options

    families = step_families(config)
    wanted = {layout.job_key(job): (layout.RUN_DIR, job) for job in study_jobs(config)}
    wanted |= {layout.job_key(job): (layout.TUNING_RUN_DIR, job) for job in tuning_jobs(config)}
    runs = dict(bundle_runs(bundle, tuning=True))
    plan = []
    for key, (pattern, job) in wanted.items():
        if key not in runs:
            continue
        if pattern == layout.TUNING_RUN_DIR:
            spec = tuning_spec(config, **job)
            part = (job["dataset"], job["setting"], job["seed"])
        else:
            spec = job_spec(config, **job)
            choice = choices.get((job["dataset"], job["setting"], job["method"]))
            if choice:
                spec = with_options(spec, read_json(next(p for p in choice if p.exists()), "tuning choice")
                                    ["chosen"]["options"])
            part = (job["dataset"], families[job["setting"]], job["seed"])
        if spec.to_dict() == runs[key]["job"]:
            plan.append((pattern, key, results_root / pattern.format(**job), runs[key], part))
    return plan, sorted(set(runs) - {key for _, key, *_ in plan})


def _restorable_partitions(bundle: Path, results_root: Path, parts, config_path) -> dict[tuple, Path]:
    """The local manifest of each partition the restored runs trained on, each checked equal to the bundle's;
    BundleError when one is not made here yet (the pipeline makes them: restoring first would leave the runs
    older than their inputs, and Snakemake would retrain them) or differs."""
    manifests, unmade = {}, []
    for dataset, setting, seed in sorted(parts):
        part = {"dataset": dataset, "setting": setting, "seed": seed}
        local = results_root / layout.PARTITION_DIR.format(**part) / layout.MANIFEST_FILE
        published = bundle / PARTITION_ENTRY.format(**part)
        if not local.exists():
            unmade.append(f"{dataset}/{setting}/seed{seed}")
            continue
        if read_json(local, "partition manifest") != read_json(published, "bundle's partition manifest"):
            raise BundleError(f"{local} is not the partition the bundle's runs trained on ({published}): the data "
                              f"or the partition code differ here; remove the local partition and make it again "
                              f"(snakemake --configfile {config_path} --until partition), or retrain the study")
        manifests[dataset, setting, seed] = local
    if unmade:
        raise BundleError(f"{len(unmade)} partition(s) the bundle's runs trained on are not made under "
                          f"{results_root} yet ({', '.join(unmade[:3])}{', ...' if len(unmade) > 3 else ''}); make "
                          f"them first (snakemake --configfile {config_path} --until partition), then restore")
    return manifests
