"""The one error boundary of the command line and the pipeline's scripts.

A foreseeable problem -- a bad config value, missing data, a tampered partition, a damaged checkpoint, a
read-only folder, a full disk, an unusable MLflow store -- ends as one line that names what failed and how
to fix it. Anything else is a bug and keeps its traceback (as does every error with ``fedakd --debug``).
The suite's own exception classes already carry such a line; ``explain`` adds the operating system's,
SQLAlchemy's and MLflow's errors, recognised by their type's module so that nothing is imported for it.
"""

from __future__ import annotations

import errno


def user_error_types() -> tuple[type[BaseException], ...]:
    """The suite's exception classes whose message names the problem and the fix."""
    from fedakd.config import ConfigError
    from fedakd.data import DataError
    from fedakd.engine import CheckpointError, DeviceError
    from fedakd.flower import FlowerError
    from fedakd.io import UnreadableFileError
    from fedakd.jobs import JobError
    from fedakd.partition import PartitionError
    from fedakd.publish import BundleError
    from fedakd.registry import UnknownMethodError
    from fedakd.reporting.collect import ResultsError
    from fedakd.tracking import TrackingError

    return (BundleError, CheckpointError, ConfigError, DataError, DeviceError, FlowerError, JobError, PartitionError,
            ResultsError, TrackingError, UnknownMethodError, UnreadableFileError)


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_error(exc: OSError) -> str | None:
    where = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk of {where}; free some space and rerun (finished results are kept)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{where} cannot be written ({exc.strerror}); make it writable, or point --out, data_root or "
                f"tracking_uri at a folder you can write")
    if exc.filename:
        return f"{where}: {exc.strerror or _first_line(exc)}; check the path"
    return None


def explain(exc: BaseException) -> str | None:
    """One line for a foreseeable error, None for a bug."""
    if isinstance(exc, user_error_types()):
        return _first_line(exc) if isinstance(exc, KeyError) else str(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    package = type(exc).__module__.split(".")[0]
    if package == "sqlalchemy":
        return (f"the MLflow store cannot be used ({_first_line(exc)}); if it is a damaged SQLite file, move it "
                f"aside and rerun: every result is on disk and is logged again")
    if package == "mlflow":
        return f"MLflow refused the request: {_first_line(exc)}"
    return None
