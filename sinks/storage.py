"""Talking to the output storage (local disk, GCS through fsspec): which errors to retry,
what to tell the user, and a check of the output before a run reads anything.

Transient errors (5xx, 429, timeouts, lost connections) are retried with backoff;
errors that will not heal (not found, 401/403, a bad request, a local permission)
stop the run with one line naming the location and the cause. A run that cannot
write its output stops that way before it reads a record (`check_output`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

# gcsfs probes buckets over gRPC unless told otherwise; the GCS emulator never
# answers, so every call would wait 60 s. Must be set before gcsfs is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec
from gcsfs.retry import HttpError
from gcsfs.retry import is_retriable as gcs_is_retriable

from config import ConfigError
from monitoring.health import HEALTH

log = logging.getLogger(__name__)
T = TypeVar("T")


class _StorageRetries(logging.Filter):
    """gcsfs retries failed requests for about 30 s on its own, logging them at DEBUG and
    the last with a traceback. Keep one WARNING line per 30 s, without the traceback,
    so an outage of the storage shows in our logs."""

    def __init__(self) -> None:
        super().__init__()
        self.last = -1e9

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "retrying after exception" not in message and "out of retries" not in message:
            return record.levelno >= logging.WARNING and "non-retriable" not in message
        now = time.monotonic()
        if now - self.last < 30.0:
            return False
        self.last = now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args, record.exc_info, record.exc_text = (
            f"storage request failed, retrying: {message.split('exception: ', 1)[-1]}",
            None,
            None,
            None,
        )
        return True


_gcsfs_log = logging.getLogger("gcsfs")
_gcsfs_log.setLevel(logging.DEBUG)
_gcsfs_log.addFilter(_StorageRetries())


def is_transient(ex: BaseException) -> bool:
    """Whether waiting can make a storage error go away: 5xx, 408, 429, timeouts, lost
    connections. Not found, 401/403, bad requests and local permissions cannot."""
    if isinstance(ex, HttpError):
        return bool(gcs_is_retriable(ex))
    if isinstance(ex, ValueError | FileNotFoundError | FileExistsError | IsADirectoryError):
        return False
    if isinstance(ex, PermissionError) or _errno_of(ex) in _PERMANENT or _forbidden(ex):
        return False
    if _no_credentials(ex):
        return False
    if type(ex).__module__.startswith("deltalake"):
        return _delta_transient(ex)
    return isinstance(ex, OSError | TimeoutError | ConnectionError) or bool(gcs_is_retriable(ex))


_PERMANENT = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}


def _errno_of(ex: BaseException) -> int | None:
    """The errno of an OS error, also of one raised by Rust code (Polars' writer), which
    only names it in the message: "Read-only file system (os error 30)"."""
    if not isinstance(ex, OSError):
        return None
    if ex.errno is not None:
        return ex.errno
    found = re.search(r"\(os error (\d+)\)", str(ex))
    return int(found.group(1)) if found else None


def _forbidden(ex: BaseException) -> bool:
    """gcsfs's 403: a plain OSError whose message starts with "Forbidden"."""
    return isinstance(ex, OSError) and str(ex).startswith("Forbidden")


def _delta_transient(ex: BaseException) -> bool:
    """deltalake raises its own exceptions with object_store's message: a lost commit race
    past its retries, a 5xx, 429 or a lost connection can heal."""
    if type(ex).__name__ == "CommitFailedError":
        return True
    text = str(ex).lower()
    return any(
        hint in text
        for hint in ("connection", "timed out", "timeout", " 500", " 502", " 503", " 504", " 429")
    )


def _no_credentials(ex: BaseException) -> bool:
    return type(ex).__name__ == "DefaultCredentialsError"


def cause(ex: BaseException) -> str:
    """What went wrong, in a few words: not found, permission denied, no credentials."""
    if _forbidden(ex):
        return "permission denied (403)"
    if _errno_of(ex) in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied ({os.strerror(_errno_of(ex) or 0)})"
    if isinstance(ex, FileNotFoundError) and ex.errno is None:  # gcsfs's 404: the path
        return f"not found (404: {ex.args[0] if ex.args else ''})"
    if isinstance(ex, OSError) and ex.strerror:
        where = f": {ex.filename}" if ex.filename else ""
        return f"{ex.strerror.lower()}{where}"
    if isinstance(ex, HttpError):
        return f"HTTP {ex.code}: {' '.join(str(ex.message).split())[:200]}"
    if _no_credentials(ex):
        return (
            "no Google credentials (set GOOGLE_APPLICATION_CREDENTIALS or run "
            "`gcloud auth application-default login`)"
        )
    return f"{type(ex).__name__}: {' '.join(str(ex).split())[:200]}"


class StorageFailure(RuntimeError):
    """A storage error that retrying cannot fix; the message is one line."""


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for an output URL: the GCS emulator when STORAGE_EMULATOR_HOST is set.

    Passing the endpoint explicitly (rather than letting gcsfs read the variable) also
    keeps fsspec's instance cache from handing out a client for another endpoint.
    Otherwise credentials come the usual Google way (application default credentials,
    GOOGLE_APPLICATION_CREDENTIALS).
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if url.startswith(("gs://", "gcs://")) and emulator:
        if not emulator.startswith("http"):
            emulator = f"http://{emulator}"
        return {"endpoint_url": emulator, "token": "anon"}
    return {}


def delta_storage_options(url: str) -> dict[str, str]:
    """deltalake (object_store) options for an output URL.

    On GCS, credentials come the Google way as for fsspec (GOOGLE_APPLICATION_CREDENTIALS,
    application default credentials). Against the emulator, object_store needs a
    service-account file naming the endpoint; `STORAGE_EMULATOR_XML_HOST`, when set, is
    the endpoint for object_store's XML API calls (see `infra.gcs_emulator`).
    """
    emulator = os.environ.get("STORAGE_EMULATOR_XML_HOST") or os.environ.get(
        "STORAGE_EMULATOR_HOST"
    )
    if not url.startswith(("gs://", "gcs://")) or not emulator:
        return {}
    if not emulator.startswith("http"):
        emulator = f"http://{emulator}"
    path = os.path.join(
        tempfile.gettempdir(),
        f"clickstream-emulator-{uuid.uuid5(uuid.NAMESPACE_URL, emulator).hex}.json",
    )
    if not os.path.exists(path):
        key = {
            "gcs_base_url": emulator,
            "disable_oauth": True,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        }
        hidden = f"{path}.{os.getpid()}"
        with open(hidden, "w") as f:
            json.dump(key, f)
        os.replace(hidden, path)
    return {"google_service_account_path": path}


def output_fs(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and root path of an output URL."""
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
    return fs, path.rstrip("/")


def is_local(fs: Any) -> bool:
    """Whether an fsspec filesystem is the local disk."""
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def is_delta_table(fs: Any, path: str) -> bool:
    """Whether `path` on `fs` is a Delta table (has a transaction log)."""
    return bool(fs.exists(f"{path.rstrip('/')}/_delta_log"))


def table_files(fs: Any, root: str, table: str, version: int | None = None) -> list[str]:
    """The data files of `table` under `root`, sorted: a Delta table's files (of its
    current version, or `version`), or the Parquet files of a directory (not the hidden
    half-written ones)."""
    base = f"{root.rstrip('/')}/{table}"
    if not fs.exists(base):
        return []
    if is_delta_table(fs, base):
        from deltalake import DeltaTable  # only for Delta output

        url = base if is_local(fs) else f"gs://{base}"
        found = DeltaTable(url, version=version, storage_options=delta_storage_options(url))
        uris = found.file_uris()
        return sorted(u.split("://", 1)[-1] for u in uris)
    return sorted(f for f in fs.find(base) if f.endswith(".parquet") and "/." not in f)


def check_output(url: str) -> None:
    """Make sure the run can write to `url`: create it, write a probe and remove it.

    A `ConfigError` naming CLICKSTREAM_OUTPUT, the location and the cause otherwise;
    nothing is left behind.
    """
    try:
        fs, root = output_fs(url)
        if is_local(fs):
            try:
                fs.makedirs(root, exist_ok=True)
            except OSError as ex:
                raise ConfigError(
                    f"CLICKSTREAM_OUTPUT {url}: cannot create the directory: {cause(ex)}"
                ) from None
        else:
            bucket = root.split("/", 1)[0]
            if not fs.exists(bucket):
                raise ConfigError(f"CLICKSTREAM_OUTPUT {url}: bucket {bucket} does not exist")
        probe = f"{root}/.clickstream-probe-{uuid.uuid4().hex}"
        with fs.open(probe, "wb") as f:
            f.write(b"probe")
        fs.rm(probe)
    except ConfigError:
        raise
    except Exception as ex:
        raise ConfigError(f"CLICKSTREAM_OUTPUT {url}: {cause(ex)}") from None


def retry(
    action: Callable[[], T],
    what: str,
    *,
    give_up_after_s: float = 300.0,
    first_wait_s: float = 0.5,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run `action`, retrying transient storage errors with exponential backoff; an
    error that will not heal (see `is_transient`) raises `StorageFailure` at once.

    Waits 0.5 s, doubling up to 30 s between attempts. Once `give_up_after_s` have
    passed (5 minutes by default, `CLICKSTREAM_STORAGE_RETRY_TIMEOUT`), `/health`
    turns 503 so an orchestrator can restart the process, and the attempts go on at
    the longest wait: if the storage comes back first, the run carries on and
    `/health` is 200 again.
    """
    wait = first_wait_s
    longest = min(30.0, max(0.5, give_up_after_s / 10))
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            result = action()
        except Exception as ex:
            if not is_transient(ex):
                raise StorageFailure(f"{what}: {cause(ex)}") from ex
            attempt += 1
            if on_retry is not None:
                on_retry()
            if time.monotonic() - started >= give_up_after_s:
                if HEALTH.storage_error is None:
                    log.error(
                        "%s still failing after %.0f s (%s: %s); unhealthy, retrying every %.1f s",
                        what,
                        time.monotonic() - started,
                        type(ex).__name__,
                        ex,
                        longest,
                    )
                HEALTH.storage_failed(f"{what}: {type(ex).__name__}: {ex}")
            else:
                log.warning(
                    "%s failed (%s: %s); retry %d in %.1f s",
                    what,
                    type(ex).__name__,
                    ex,
                    attempt,
                    wait,
                )
            time.sleep(wait)
            wait = min(wait * 2, longest)
            continue
        if attempt and HEALTH.storage_error is not None:
            log.info("%s succeeded after %d retries; healthy again", what, attempt)
            HEALTH.storage_ok()
        return result
