"""Packaging: pyproject.toml is the source of truth for dependencies and methods, environment.yml follows it,
and a wheel installed outside the checkout validates a config and trains."""

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "psycopg2-binary": "psycopg2"}  # PyPI name -> conda-forge name where they differ


def _name_and_spec(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*(.*)$", requirement)  # extras: pip's, not conda's
    return match.group(1).lower(), match.group(3).replace(" ", "")


def test_environment_yml_lists_every_dependency_with_the_same_bound():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_name_and_spec(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_name_and_spec(d) for d in env["dependencies"] if isinstance(d, str))
    for name, spec in wanted.items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} (pyproject: {name}{spec})"
        assert conda[conda_name] == spec, f"{conda_name}: environment.yml {conda[conda_name]!r} != pyproject {spec!r}"


def test_the_registry_is_exactly_pyprojects_entry_points_each_its_own_class():
    from fedakd.method import Method
    from fedakd.registry import get_method, method_names

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["fedakd.methods"]
    assert method_names() == sorted(declared)  # a stale install (make setup) would list other names
    for name, target in declared.items():
        module, _, attribute = target.partition(":")
        cls = get_method(name)
        assert issubclass(cls, Method) and cls.__module__ == module and cls.__name__ == attribute, name
        assert attribute in vars(__import__(module, fromlist=[attribute])), name  # defined there, not imported


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_validates_and_trains(tmp_path, beside_the_smoke_pipeline):
    """pip builds a wheel, installs it (no dependencies: they come from this environment through a .pth
    file, not from the network) into a fresh venv, and the fedakd command of that venv, run from another
    folder, validates a config and trains a digits job from the package's own files."""
    import shutil

    source = tmp_path / "source"  # a copy, so the build's own folders stay out of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "fedakd", "baselines"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, text=True)
    wheel = next(wheels.glob("fedakd_bench-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, capture_output=True, text=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # This environment's dependencies (torch, mlflow, ...), after the venv's own site-packages; a plain path
    # line, so this environment's editable fedakd (a .pth hook of its own) is not activated.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config.update(tracking_uri=f"sqlite:///{elsewhere / 'mlflow.db'}", data_root=str(elsewhere / "data"))
    (elsewhere / "smoke.yaml").write_text(yaml.safe_dump(config))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def fedakd(*args):
        return subprocess.run([str(venv / "bin" / "fedakd"), *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)

    imported = subprocess.run([str(python), "-c", "import fedakd, baselines; print(fedakd.__file__, baselines.__file__)"],
                              cwd=elsewhere, env=env, capture_output=True, text=True)
    assert imported.returncode == 0, (imported.stderr, sorted({n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}),
                                      sorted(p.name for p in Path(site).iterdir()), os.environ.get("VIRTUAL_ENV"))
    where = imported.stdout
    assert str(ROOT) not in where and site in where  # the wheel's copy, not the checkout's
    validated = fedakd("validate", "--config", "smoke.yaml")
    jobs = len(config["datasets"]) * len(config["settings"]) * len(config["methods"]) * len(config["seeds"])
    assert validated.returncode == 0 and f"valid; {jobs} training jobs" in validated.stdout, validated.stderr
    trained = fedakd("train", "--config", "smoke.yaml", "--dataset", "digits", "--setting", "lt10-dir1",
                     "--method", "fedakd", "--seed", "0", "--out", "run", "--threads", "1")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (elsewhere / "run" / "metrics.json").exists()


def test_from_a_source_checkout_the_methods_come_from_pyproject(monkeypatch):
    """The conda route runs the workflow's scripts from the checkout, with no installed metadata."""
    from fedakd import registry

    registry._entry_points.cache_clear()
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    try:
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["fedakd.methods"]
        assert registry.method_names() == sorted(declared)
        assert registry.get_method("fedprox").__name__ == "FedProx"
    finally:
        registry._entry_points.cache_clear()


def test_the_makefiles_snakemake_commands_parse_to_their_targets():
    """`make report` once passed its target after --configfile, which takes several values, so Snakemake read
    'report' as a second config file: each recipe's arguments parsed as Snakemake parses them."""
    import shlex

    from snakemake.cli import get_argument_parser

    parser = get_argument_parser()
    parser = parser[0] if isinstance(parser, tuple) else parser
    makefile = (ROOT / "Makefile").read_text()
    paper = re.search(r"^PAPER_SNAKEMAKE = (.*\\\n.*)$", makefile, flags=re.M).group(1).replace("\\\n", " ")
    recipes = re.findall(r"^([\w-]+):.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    commands = {}
    for target, body in recipes:
        body = body.replace("$(PAPER_SNAKEMAKE)", paper).replace("\\\n", " ").replace("$(BIN)/", "")
        body = body.replace("$(CONFIG)", "config/config.yaml").replace("$(CORES)", "2")
        body = body.replace("$(STUDY_CONFIG)", "config/config.yaml").replace("$(ARGS)", "--until tune_select")
        for line in body.splitlines():
            words = shlex.split(line.strip())
            if words and words[0] == "snakemake":
                commands[target] = parser.parse_args(words[1:])
    assert {"reproduce", "report", "paper", "resume"} <= set(commands)
    assert set(commands["resume"].until) == {"tune_select"} and not commands["resume"].targets  # ARGS: options only
    assert commands["report"].targets == ["report"]
    assert commands["paper"].config == ["published=published/$(STUDY)"]  # the last snakemake line of make paper
    for target, args in commands.items():
        configs = ([], ["config/config.yaml"]) if target != "paper" else (["$(PAPER)/config.yaml"],)
        assert [str(path) for path in args.configfile or []] in configs, target
