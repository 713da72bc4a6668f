"""Shared fixtures: a small digits configuration written to a temporary folder."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def digits_config(tmp_path) -> Path:
    """config/smoke.yaml with its MLflow store inside tmp_path; returns the config path."""
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config["data_root"] = str(tmp_path / "data")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
