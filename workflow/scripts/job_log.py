"""Shared by the Snakemake scripts: a job's logging and stderr go to its log file, and a predictable
error (one of fedakd's own exception classes, whose message names the problem and the fix) ends as one
line on the console instead of a traceback; anything else is a bug and keeps its traceback.

Importing it also makes the checkout's packages importable when they are not installed: in a rule's
conda environment (--software-deployment-method conda) only the dependencies are installed, and the
scripts run the fedakd and baselines of the checkout they belong to."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
import traceback
from pathlib import Path
from typing import Iterator

if importlib.util.find_spec("fedakd") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PREDICTABLE_ERROR_PACKAGES = ("fedakd", "baselines")


@contextlib.contextmanager
def logged(snakemake) -> Iterator[None]:
    with open(snakemake.log[0], "w", buffering=1, encoding="utf-8") as log, contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            yield
        except Exception as error:
            traceback.print_exc(file=log)
            if type(error).__module__.split(".")[0] not in PREDICTABLE_ERROR_PACKAGES:
                raise
            print(f"fedakd: rule {snakemake.rule} failed: {error}", file=sys.__stderr__, flush=True)
            sys.exit(1)
