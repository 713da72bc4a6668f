"""Shared by the Snakemake scripts: a job's logging and stderr go to its log file, and a foreseeable error
(fedakd.errors: the suite's own, a read-only folder, a full disk, an unusable MLflow store) ends as one line
on the console naming the problem and the fix, its traceback kept in the log; anything else is a bug and
keeps its traceback on the console too."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from typing import Iterator


@contextlib.contextmanager
def logged(snakemake) -> Iterator[None]:
    with open(snakemake.log[0], "w", buffering=1, encoding="utf-8") as log, contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            yield
        except Exception as error:
            from fedakd.errors import explain

            traceback.print_exc(file=log)
            line = explain(error)
            if line is None:
                raise
            print(f"fedakd: rule {snakemake.rule} failed: {line} (log: {snakemake.log[0]})", file=sys.__stderr__,
                  flush=True)
            sys.exit(1)
