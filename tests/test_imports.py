"""Config validation and a job's start-up import nothing heavy until they need it."""

import subprocess
import sys


def test_validating_a_config_imports_neither_torch_nor_mlflow():
    # Every registered method class is loaded (for its options); none may pull in torch at import time.
    code = ("import sys; from fedakd.config import load_config; load_config('config/smoke.yaml'); "
            "heavy = [m for m in ('torch', 'mlflow', 'sklearn', 'matplotlib') if m in sys.modules]; print(heavy)")
    from tests.conftest import ROOT

    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]", completed.stdout
