"""Shared fixtures: a small digits configuration written to a temporary folder."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def digits_config(tmp_path) -> Path:
    """config/smoke.yaml with its MLflow store inside tmp_path; returns the config path."""
    from tests.helpers import smoke_config

    return smoke_config(tmp_path)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke pipeline (every method, digits) run once for the whole test session; the tests that read its
    outputs (tables, report, MLflow store, the browser test) share it. Returns the working folder and the
    first run's result."""
    from tests.test_pipeline import snakemake

    workdir = tmp_path_factory.mktemp("smoke")
    return workdir, snakemake(workdir)
