"""What a training job costs beyond its rounds, measured on real `fedakd train` jobs launched as subprocesses.

For one job of the default study (Fashion-MNIST, fedakd) launched as the pipeline launches it:
- ``startup``: wall and CPU seconds from the launch to the first local step;
- ``overhead_cpu_seconds``: CPU seconds outside rounds over the whole job (imports, data, partition,
  files, exit): the job's total CPU (os.wait4) minus the CPU inside its rounds (benchmarks/job_probe.py);
  also as the issue that asked for it defined it, 2·cpu(1 round) − cpu(2 rounds);
- ``imports``: ``python -X importtime``'s ten largest top-level imports of that job;
- ``peak_rss_mb``: the job's resident-set high-water mark.
And for a small study (the default study's seven methods on one of its settings, one seed, 2 rounds;
--quick: two methods on digits), every job's overhead and the pipeline's tracking step summed: the share
of the study's CPU that is not rounds.

With a baseline (``--baseline REV``), the same measures run over that commit's code (``git archive``
into a temporary folder, imported through PYTHONPATH) in the same run, launches alternating, so the
before/after ratio is measured side by side. A tree without ``--no-track`` (before the tracking step
existed) is launched as its pipeline launched it: with the experiment id, logging to MLflow in the job.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, BenchError

PROBE = ROOT / "benchmarks" / "job_probe.py"
FIRST_STEP_MARK, ROUNDS_MARK, CHILD_MARK = "FEDAKD_PROBE_FIRST_STEP=", "FEDAKD_PROBE_ROUNDS_CPU=", "FEDAKD_CHILD="
LAUNCH_TIME = "{launch_time}"  # replaced with time.time() by the parent just before it starts the job

#: Runs the job as its own child and reports the child's ru_maxrss and CPU. A child started directly from
#: the (large) benchmark process would not do: on Linux, exec records the replaced memory's high-water
#: mark, so a vfork()ed child inherits this process's peak.
CHILD_PROBE = f"""\
import os, subprocess, sys, time
command = [repr(time.time()) if part == {LAUNCH_TIME!r} else part for part in sys.argv[1:]]
process = subprocess.Popen(command)
_, status, usage = os.wait4(process.pid, 0)
print(f"{CHILD_MARK}{{usage.ru_maxrss}} {{usage.ru_utime + usage.ru_stime}}", file=sys.stderr, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
#: The default study's methods (config/config.yaml), run on digits for the study share.
STUDY_METHODS = ("fedavg", "fedavg-smote", "feddf", "fedavg-ft", "fedakd", "fedakd-noattn", "fedakd-nokd")


@dataclass(frozen=True)
class Tree:
    """The code a job runs: this checkout, or an older commit unpacked into a folder."""

    label: str
    root: Path
    pythonpath: str | None  # None: the installed (editable) checkout

    @property
    def tracks_in_job(self) -> bool:
        """Before the tracking step existed, a job logged to MLflow itself (no --no-track)."""
        return "--no-track" not in (self.root / "fedakd" / "cli.py").read_text()

    def env(self) -> dict[str, str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env


def baseline_tree(rev: str, folder: Path) -> Tree:
    """``rev``'s tracked files unpacked into ``folder`` (git archive), without touching the work tree."""
    archive = folder / "baseline.tar"
    with open(archive, "wb") as out:
        done = subprocess.run(["git", "archive", rev], cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise BenchError(f"--baseline {rev}: git archive failed: {done.stderr.decode().strip()}")
    root = folder / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True).stdout
    return Tree(f"baseline {commit.strip()}", root, str(root))


def _marked(output: str, mark: str) -> list[float]:
    lines = [line[len(mark):] for line in output.splitlines() if line.startswith(mark)]
    if not lines:
        raise BenchError(f"the job's output has no {mark} line; its output:\n{output[-4000:]}")
    return [float(part) for part in lines[-1].split()]


def launch(tree: Tree, *, config: Path, dataset: str, setting: str, method: str, seed: int,
           overrides: list[str], workdir: Path, experiment_id: str | None, threads: int = 1,
           importtime: bool = False) -> dict[str, Any]:
    """One `fedakd train` job of ``tree`` in a fresh output folder: its CPU split, start-up and peak RSS."""
    out = Path(tempfile.mkdtemp(prefix="job-", dir=workdir))
    arguments = ["train", "--config", str(config), "--dataset", dataset, "--setting", setting, "--method", method,
                 "--seed", str(seed), "--out", str(out / "run"), "--threads", str(threads)]
    if not tree.tracks_in_job:
        arguments.append("--no-track")  # as the pipeline's train rule runs it: its track rule logs the run
    elif experiment_id is not None:
        arguments += ["--experiment-id", experiment_id]  # as that tree's pipeline ran it
    for override in [*overrides, f"tracking_uri=sqlite:///{workdir / 'mlflow.db'}"]:
        arguments += ["--set", override]
    job = [sys.executable, *(["-X", "importtime"] if importtime else []), str(PROBE), LAUNCH_TIME, *arguments]
    completed = subprocess.run([sys.executable, "-S", "-c", CHILD_PROBE, *job], cwd=workdir, env=tree.env(),
                               capture_output=True, text=True)
    output = completed.stderr
    if completed.returncode != 0:
        raise BenchError(f"{tree.label}: `{' '.join(job)}` failed with exit status {completed.returncode}:\n"
                         f"{output[-4000:]}")
    first_wall, first_cpu = _marked(output, FIRST_STEP_MARK)
    (rounds_cpu,) = _marked(output, ROUNDS_MARK)
    maxrss, total_cpu = _marked(output, CHILD_MARK)
    return {"first_step_wall_seconds": first_wall, "first_step_cpu_seconds": first_cpu,
            "total_cpu_seconds": total_cpu, "rounds_cpu_seconds": rounds_cpu,
            "overhead_cpu_seconds": total_cpu - rounds_cpu, "peak_rss_mb": maxrss * MAXRSS_UNIT / 2**20,
            "run_dir": str(out / "run"), **({"importtime": output} if importtime else {})}


#: The project's own packages: an import of theirs is looked into, not listed (what they import is).
OWN_PACKAGES = ("fedakd", "baselines", "benchmarks", "job_probe")


def largest_imports(importtime_output: str, count: int = 10) -> list[dict[str, Any]]:
    """The ``count`` largest imports (cumulative seconds) of ``python -X importtime``'s report that are not
    the project's own: each is the outermost import of a package outside the project, at whatever depth
    (torch, imported by fedakd.engine, is listed as torch; its submodules are in its figure)."""
    nodes: list[tuple[int, str, float, list]] = []  # pending (depth, module, seconds, children)
    for line in importtime_output.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        children = []
        while nodes and nodes[-1][0] > depth:  # importtime prints an import's children just before it
            children.insert(0, nodes.pop())
        nodes.append((depth, name.strip(), int(cumulative) / 1e6, children))

    found: list[dict[str, Any]] = []

    def visit(node) -> None:
        _, module, seconds, children = node
        if module.split(".")[0] in OWN_PACKAGES:
            for child in children:
                visit(child)
        else:
            found.append({"module": module, "seconds": seconds})

    for node in nodes:
        visit(node)
    return sorted(found, key=lambda row: -row["seconds"])[:count]


def _experiment(tree: Tree, workdir: Path, name: str) -> str | None:
    """For a tree whose jobs log to MLflow: create the store and experiment once, as its mlflow_setup rule did."""
    if not tree.tracks_in_job:
        return None
    code = (f"from fedakd.tracking import ensure_experiment\n"
            f"print(ensure_experiment('sqlite:///{workdir / 'mlflow.db'}', {name!r}))")
    done = subprocess.run([sys.executable, "-c", code], env=tree.env(), capture_output=True, text=True, cwd=workdir)
    if done.returncode != 0:
        raise BenchError(f"{tree.label}: could not create the MLflow experiment: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def track_cpu_seconds(tree: Tree, workdir: Path, experiment: str, run_dirs: list[str]) -> float:
    """CPU of the pipeline's tracking step (one process logging every run folder): 0 for a tree without one."""
    if tree.tracks_in_job:
        return 0.0
    code = ("import sys\nfrom fedakd.track import track_job\nfrom fedakd.tracking import ensure_experiment\n"
            f"uri = 'sqlite:///{workdir / 'track.db'}'\n"
            f"experiment_id = ensure_experiment(uri, {experiment!r})\n"
            "for folder in sys.argv[1:]:\n    track_job(folder, tracking_uri=uri, experiment_id=experiment_id)\n")
    completed = subprocess.run([sys.executable, "-S", "-c", CHILD_PROBE, sys.executable, "-c", code, *run_dirs],
                               cwd=workdir, env=tree.env(), capture_output=True, text=True)
    if completed.returncode != 0:
        raise BenchError(f"{tree.label}: the tracking step failed:\n{completed.stderr[-4000:]}")
    return _marked(completed.stderr, CHILD_MARK)[1]


def _median(launches: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in launches)


def bench_overhead(trees: list[Tree], *, data_root: str, quick: bool, repeats: int) -> dict[str, Any]:
    """Every measure for every tree, launches alternating between the trees."""
    results: dict[str, dict[str, Any]] = {tree.label: {"launches": {1: [], 2: []}} for tree in trees}
    with tempfile.TemporaryDirectory(prefix="fedakd-overhead-") as tmp:
        workdirs = {tree.label: Path(tmp) / tree.label.replace(" ", "-") for tree in trees}
        for folder in workdirs.values():
            folder.mkdir()
        experiments = {tree.label: _experiment(tree, workdirs[tree.label], "bench") for tree in trees}

        def one_job(tree: Tree, rounds: int, **extra) -> dict[str, Any]:
            if quick:
                job = {"config": tree.root / "config" / "smoke.yaml", "dataset": "digits", "setting": "lt10-dir1",
                       "method": "fedakd", "seed": 0}
            else:
                job = {"config": tree.root / "config" / "config.yaml", "dataset": "fashion-mnist",
                       "setting": "lt10-dir0.5", "method": "fedakd", "seed": 0}
            return launch(tree, **job, overrides=[f"federation.rounds={rounds}", f"data_root={data_root}",
                                                  "experiment=bench"],
                          workdir=workdirs[tree.label], experiment_id=experiments[tree.label], **extra)

        for tree in trees if not quick else ():  # a warm-up: file cache, decoded-data cache, bytecode
            one_job(tree, 1)
        for _ in range(repeats):
            for rounds in (1, 2):
                for tree in trees:
                    results[tree.label]["launches"][rounds].append(one_job(tree, rounds))
        for tree in trees:
            report = results[tree.label]
            ones, twos = report["launches"][1], report["launches"][2]
            imports = largest_imports(one_job(tree, 1, importtime=True)["importtime"])
            report.update({
                "startup_wall_seconds": _median(ones, "first_step_wall_seconds"),
                "startup_cpu_seconds": _median(ones, "first_step_cpu_seconds"),
                "overhead_cpu_seconds": _median(ones + twos, "overhead_cpu_seconds"),
                "overhead_cpu_seconds_by_rounds": 2 * _median(ones, "total_cpu_seconds") - _median(twos, "total_cpu_seconds"),
                "job_cpu_seconds": {"1 round": _median(ones, "total_cpu_seconds"),
                                    "2 rounds": _median(twos, "total_cpu_seconds")},
                "peak_rss_mb": max(run["peak_rss_mb"] for run in ones + twos),
                "imports": imports,
            })
            for rounds in (1, 2):
                for run in report["launches"][rounds]:
                    run.pop("run_dir")
        methods = STUDY_METHODS[:2] if quick else STUDY_METHODS
        if quick:
            study_job = {"config": "smoke.yaml", "dataset": "digits", "setting": "lt10-dir1", "overrides": []}
        else:  # the default study's jobs, one seed, 2 of its 6 rounds
            study_job = {"config": "config.yaml", "dataset": "fashion-mnist", "setting": "lt10-dir0.5",
                         "overrides": ["federation.rounds=2"]}
        for tree in trees:
            jobs = [launch(tree, config=tree.root / "config" / study_job["config"], dataset=study_job["dataset"],
                           setting=study_job["setting"], method=method, seed=0,
                           overrides=[*study_job["overrides"], f"data_root={data_root}", "experiment=bench"],
                           workdir=workdirs[tree.label], experiment_id=experiments[tree.label])
                    for method in methods]
            tracking = track_cpu_seconds(tree, workdirs[tree.label], "bench-study", [job["run_dir"] for job in jobs])
            overhead = sum(job["overhead_cpu_seconds"] for job in jobs) + tracking
            total = sum(job["total_cpu_seconds"] for job in jobs) + tracking
            results[tree.label]["study"] = {
                "jobs": len(jobs), "methods": list(methods),
                "jobs_are": f"config/{study_job['config']} {study_job['dataset']} {study_job['setting']}, seed 0 "
                            + " ".join(study_job["overrides"]),
                "overhead_cpu_seconds": overhead, "total_cpu_seconds": total, "tracking_step_cpu_seconds": tracking,
                "overhead_share": overhead / total, "overhead_cpu_seconds_per_job": overhead / len(jobs)}
    return {"trees": results, "job": "config/smoke.yaml digits fedakd" if quick else
            "config/config.yaml fashion-mnist lt10-dir0.5 fedakd, seed 0, 1 torch thread",
            "launched_as": "fedakd train --no-track (the pipeline's train rule; its track rule logs the run), "
                           "or, for a tree without it, with --experiment-id (as its pipeline ran it)",
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
