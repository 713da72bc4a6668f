"""Command line: `fedakd validate | partition | train | ui-link | flower | publish | restore | unpack | verify |
ui-import | options | verdict`.

Predictable problems (a bad config value, missing data, a tampered partition, a
read-only folder, a damaged store: fedakd.errors) end with one line naming the
problem and the fix, exit status 2, and nothing half-written; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_job_arguments(parser: argparse.ArgumentParser, *, method: bool) -> None:
    parser.add_argument("--config", required=True, help="YAML config (see config/ and the schema)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--setting", required=True, help="a key of the config's `settings`")
    if method:
        parser.add_argument("--method", required=True, help="a key of the config's `methods`")
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value (repeatable), e.g. --set federation.rounds=5")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} threads: give at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedakd", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a config and list its jobs")
    validate.add_argument("--config", required=True)
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")

    add_job_arguments(commands.add_parser("partition", help="make and save one partition"), method=False)

    train = commands.add_parser("train", help="train one (dataset, setting, method, seed) job")
    add_job_arguments(train, method=True)
    train.add_argument("--partition", help="folder written by `fedakd partition` (checked against its sha256)")
    train.add_argument("--experiment-id", help="MLflow experiment id (default: look up or create by name)")
    train.add_argument("--no-track", action="store_true",
                       help="train only, leaving the MLflow run to a later tracking step (what the pipeline's "
                            "train rule does; its track rule logs the runs)")
    train.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's choice)")

    link = commands.add_parser("ui-link", help="print the MLflow UI address of the config's experiment")
    link.add_argument("--config", required=True)
    link.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    link.add_argument("--url", default="http://127.0.0.1:5000", help="where the UI listens")

    from fedakd.flower.commands import add_arguments as add_flower_arguments

    add_flower_arguments(commands, add_job_arguments)
    _add_bundle_commands(commands)
    return parser


def _add_bundle_commands(commands) -> None:
    """publish, restore, unpack, verify and ui-import: a study's published bundle (fedakd.publish, fedakd.verify)."""
    publish = commands.add_parser("publish", help="write the bundle of a finished pipeline to published/<study>/")
    publish.add_argument("--config", required=True, help="the study's config; its stem names the bundle")
    publish.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    publish.add_argument("--results", default=".", help="the folder holding the pipeline's results/ (default .)")
    publish.add_argument("--out", help="the bundle's folder (default published/<config's stem>)")
    publish.add_argument("--partial", action="store_true",
                         help="publish the finished runs of an unfinished study (no tables), to go on elsewhere "
                              "with fedakd restore")
    restore = commands.add_parser("restore", help="put a bundle's finished runs back into results/, so that the "
                                                  "pipeline trains only what is missing")
    restore.add_argument("--bundle", required=True)
    restore.add_argument("--config", required=True, help="the study's config, as the pipeline runs it")
    restore.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    restore.add_argument("--results", default=".", help="the folder holding the pipeline's results/ (default .)")
    unpack = commands.add_parser("unpack", help="a bundle's results tree and config, for the pipeline's report steps")
    unpack.add_argument("--bundle", required=True)
    unpack.add_argument("--out", required=True, help="the working folder (results/ and config.yaml go there)")
    verify = commands.add_parser("verify", help="retrain jobs of a bundle and compare them with the published runs")
    verify.add_argument("--bundle", required=True)
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("--sample", type=_positive_int, help="this many jobs drawn at random (seeded)")
    which.add_argument("--job", action="append", default=[], metavar="DATASET/SETTING/METHOD/seedS")
    verify.add_argument("--rounds", type=_positive_int, help="train and compare only the first R rounds")
    verify.add_argument("--tolerance", type=float, default=None,
                        help="largest final-window balanced accuracy difference accepted from another kind of "
                             "machine (default fedakd.verify.TOLERANCE)")
    options = commands.add_parser("options", help="every option of each method (or of those named), its default "
                                                  "and what it does")
    options.add_argument("methods", nargs="*", metavar="METHOD", help="registered method names (default: all)")
    verdict = commands.add_parser("verdict", help="a bundle's verdict sentences, drawn again from its tables")
    verdict.add_argument("--bundle", required=True)
    choices = commands.add_parser("choices", help="a finished tuning stage's choices, made again from its bundle's "
                                                  "runs, as the method_options a config carries them in")
    choices.add_argument("--bundle", required=True)
    choices.add_argument("--check", metavar="CONFIG", help="exit 1 unless this config's jobs run every choice")
    ui_import = commands.add_parser("ui-import", help="load a bundle's runs into an MLflow store (twice adds nothing)")
    ui_import.add_argument("--bundle", required=True)
    ui_import.add_argument("--out", required=True, help="the working folder the runs are unpacked into")
    ui_import.add_argument("--tracking-uri", required=True, help="e.g. sqlite:///build/paper/X/mlflow.db")


def run_configless_command(args: argparse.Namespace) -> int:
    """The commands that read no config of their own: the bundle commands (verify's exit status is 1 when a
    job disagrees) and the options listing."""
    from fedakd import publish

    if args.command == "options":
        from fedakd.config.methods import describe_options

        print(describe_options(args.methods))
    elif args.command == "verdict":
        print(publish.bundle_verdict(args.bundle))
    elif args.command == "choices":
        if args.check:
            from fedakd.config import load_config

            problems = publish.choice_problems(args.bundle, load_config(args.check))
            print("\n".join(problems) or f"{args.check} runs every choice of {args.bundle}")
            return 1 if problems else 0
        print(publish.choices_yaml(args.bundle))
    elif args.command == "publish":
        out = publish.publish(args.config, args.overrides, results_root=args.results, out=args.out,
                              partial=args.partial)
        print(f"wrote {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 1e6:.2f} MB: "
              f"{publish.bundle_progress(out)})")
    elif args.command == "restore":
        outcome = publish.restore(args.bundle, args.config, args.overrides, results_root=args.results)
        print(f"restored {len(outcome['restored'])} runs into {Path(args.results) / 'results'}; "
              f"{len(outcome['here'])} were here already")
        for name, why in (("kept", "another finished run is here, kept (the next publish takes it)"),
                          ("stale", "the config no longer runs this job spec; the pipeline trains it again")):
            if outcome[name]:
                print(f"{len(outcome[name])} not restored, {why}: {', '.join(outcome[name][:5])}"
                      f"{', ...' if len(outcome[name]) > 5 else ''}")
    elif args.command == "unpack":
        print(f"unpacked into {publish.unpack(args.bundle, args.out)}")
    elif args.command == "ui-import":
        count = import_bundle(args.bundle, args.out, args.tracking_uri)
        print(f"{count} runs in {args.tracking_uri}")
    else:
        from fedakd import verify

        tolerance = verify.TOLERANCE if args.tolerance is None else args.tolerance
        checks = verify.verify(args.bundle, jobs=args.job, sample=args.sample, rounds=args.rounds,
                               tolerance=tolerance)
        print(verify.table(checks, rounds=args.rounds))
        return 0 if all(check.passed for check in checks) else 1
    return 0


def import_bundle(bundle: str, workdir: str, tracking_uri: str) -> int:
    """Unpack ``bundle`` into ``workdir`` and log each run to ``tracking_uri`` (a run already logged with the same
    record is left alone, fedakd.track); returns the number of runs."""
    from fedakd import layout, publish
    from fedakd.config import load_config
    from fedakd.track import track_job
    from fedakd.tracking import ensure_experiment

    publish.unpack(bundle, workdir)
    config = load_config(Path(workdir) / publish.CONFIG_FILE)
    experiment_id = ensure_experiment(tracking_uri, config["experiment"], config["tracking"])  # model training
    folders = [Path(workdir) / layout.RUN_DIR.format(**job) for job in publish.study_jobs(config)]
    for folder in folders:
        track_job(folder, tracking_uri=tracking_uri, experiment_id=experiment_id)
    return len(folders)


def run(args: argparse.Namespace, callbacks=()) -> int | None:
    from fedakd.config import job_spec, load_config, partition_spec

    if args.command in ("publish", "restore", "unpack", "verify", "ui-import", "options", "verdict", "choices"):
        return run_configless_command(args)
    if args.command == "flower":
        from fedakd.flower import require_flower

        require_flower()
        from fedakd.flower.commands import run as run_flower

        return run_flower(args)

    config = load_config(args.config, args.overrides)
    if args.command == "validate":
        from fedakd.config.cost import cost_warnings, study_hours, tuning_hours
        from fedakd.publish import study_jobs, tuning_jobs

        jobs, tuning = sum(1 for _ in study_jobs(config)), sum(1 for _ in tuning_jobs(config))
        hours, tuning_cost = study_hours(config), tuning_hours(config)
        stage = f" + {tuning} tuning jobs, {tuning_cost:,.1f} CPU-hours" if tuning else ""
        print(f"{args.config}: valid; {jobs} training jobs, about {hours:,.1f} CPU-hours of training{stage} "
              f"({(hours + tuning_cost) / 2:,.1f} h in all on 2 cores)")
        for warning in cost_warnings(config):
            print(warning, file=sys.stderr)
        return
    if args.command == "ui-link":
        from fedakd.tracking import experiment_link, find_experiment

        experiment_id = find_experiment(config["tracking_uri"], config["experiment"])
        print(f"open {experiment_link(args.url, experiment_id)}" if experiment_id else
              f"no experiment {config['experiment']!r} in {config['tracking_uri']} yet: run the pipeline first")
        return
    from fedakd import jobs

    if args.command == "partition":
        spec = partition_spec(config, dataset=args.dataset, setting=args.setting, seed=args.seed)
        partition = jobs.partition_job(spec, data_root=config["data_root"], out_dir=args.out)
        from fedakd.reporting.figures import partition_heatmap

        partition_heatmap(partition.manifest(), Path(args.out) / "heatmap.png")
        print(f"wrote {Path(args.out) / 'manifest.json'}")
    else:
        job = job_spec(config, dataset=args.dataset, setting=args.setting, method=args.method, seed=args.seed)
        jobs.preflight(Path(args.out), None if args.no_track else job.tracking_uri)
        if not args.no_track:  # a lost or wrong tracking URI is found before any work, not after training
            from fedakd.tracking import connect

            connect(job.tracking_uri, job.tracking)
        metrics = jobs.train_job(job, out_dir=args.out, partition_dir=args.partition, threads=args.threads,
                                 callbacks=callbacks)
        final = metrics["final"]
        if args.no_track:
            run = "not logged (--no-track)"
        else:  # the experiment is made only now, so that a job refused on the way leaves the store untouched
            run = _track(job, args)
        print(f"{job.key}: final accuracy {final['accuracy']:.4f}, minority recall {final['minority_recall']}, "
              f"mlflow run {run}")


def _track(job, args: argparse.Namespace) -> str:
    """Log the trained run folder to MLflow; a server lost since the job started says that the results are safe."""
    from fedakd.track import track_job
    from fedakd.tracking import TrackingError, ensure_experiment

    try:
        experiment_id = args.experiment_id or ensure_experiment(job.tracking_uri, job.experiment, job.tracking)
    except TrackingError as exc:
        raise TrackingError(f"lost the MLflow tracking server at {job.tracking_uri} after training ({exc}); the "
                            f"results are saved in {args.out}; rerun the same command once the server answers: it "
                            f"logs the run without training again") from None
    return track_job(args.out, tracking_uri=job.tracking_uri, experiment_id=experiment_id)


def main(argv: list[str] | None = None, callbacks=()) -> int:
    """The command line; ``callbacks`` (fedakd.engine.Callback) join a training job's own (the benchmark's timer)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = run(args, callbacks)
    except Exception as exc:
        from fedakd.errors import explain

        line = None if args.debug else explain(exc)
        if line is None:
            raise
        print(f"fedakd: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedakd: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
