"""Storage errors: which to retry (5xx, 408, 429, timeouts, lost connections) and which
stop the run with one line (not found, 401/403, a bad request, a local permission);
`StorageRetry`, the one retry loop of sinks and leases alike (time-budgeted by
`CLICKSTREAM_STORAGE_RETRY_TIMEOUT`, counted, turning `/health` 503 past its budget);
and gcsfs's own retry logs cut to one WARNING per 30 s.

gcsfs is never imported here: an error can only be one of gcsfs's when gcsfs was
imported for a `gs://` location, so its error classes are looked up only then.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from monitoring.health import HEALTH
from monitoring.metrics import STORAGE_RETRIES

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


def quiet_gcsfs_retries() -> None:
    """Route gcsfs's own retry logs through `_StorageRetries` (once per process)."""
    gcsfs_log = logging.getLogger("gcsfs")
    if not any(isinstance(f, _StorageRetries) for f in gcsfs_log.filters):
        gcsfs_log.setLevel(logging.DEBUG)
        gcsfs_log.addFilter(_StorageRetries())


def _gcsfs_retry() -> Any:
    """gcsfs's retry module if gcsfs is in use (a `gs://` location), else None."""
    if "gcsfs" not in sys.modules:
        return None
    import gcsfs.retry

    return gcsfs.retry


def _is_http_error(ex: BaseException) -> bool:
    gcs = _gcsfs_retry()
    return gcs is not None and isinstance(ex, gcs.HttpError)


def is_transient(ex: BaseException) -> bool:
    """Whether waiting can make a storage error go away: 5xx, 408, 429, timeouts, lost
    connections. Not found, 401/403, bad requests and local permissions cannot."""
    gcs = _gcsfs_retry()
    if gcs is not None and isinstance(ex, gcs.HttpError):
        return bool(gcs.is_retriable(ex))
    if isinstance(ex, ValueError | FileNotFoundError | FileExistsError | IsADirectoryError):
        return False
    if isinstance(ex, PermissionError) or _errno_of(ex) in _PERMANENT or _forbidden(ex):
        return False
    if _no_credentials(ex):
        return False
    if _is_delta_error(ex):
        return _delta_transient(ex)
    if isinstance(ex, OSError | TimeoutError | ConnectionError):
        return True
    return gcs is not None and bool(gcs.is_retriable(ex))


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


def _is_delta_error(ex: BaseException) -> bool:
    """deltalake's own exceptions (their module is its Rust extension's, `_internal`)."""
    exceptions = sys.modules.get("deltalake.exceptions")
    return exceptions is not None and isinstance(ex, exceptions.DeltaError)


# object_store's messages for what can heal. reqwest's transport errors ("error sending
# request for url", "request or response body error": a response cut off mid-body, as
# the chaos run's storage cut does) carry no status and say "connection" only sometimes.
_DELTA_TRANSIENT = (
    "connection",
    "timed out",
    "timeout",
    "error sending request",
    "body error",
    " 500",
    " 502",
    " 503",
    " 504",
    " 429",
)


def _delta_transient(ex: BaseException) -> bool:
    """deltalake raises its own exceptions with object_store's message: a lost commit race
    past its retries, a 5xx, 429, a lost connection or a cut-off response can heal."""
    if type(ex).__name__ == "CommitFailedError":
        return True
    text = str(ex).lower()
    return any(hint in text for hint in _DELTA_TRANSIENT)


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
    if _is_http_error(ex):
        code, message = getattr(ex, "code", "?"), getattr(ex, "message", ex)
        return f"HTTP {code}: {' '.join(str(message).split())[:200]}"
    if _no_credentials(ex):
        return (
            "no Google credentials (set GOOGLE_APPLICATION_CREDENTIALS or run "
            "`gcloud auth application-default login`)"
        )
    return f"{type(ex).__name__}: {' '.join(str(ex).split())[:200]}"


class StorageFailure(RuntimeError):
    """A storage error that retrying cannot fix; the message is one line."""


class StorageRetry:
    """How a storage request is run, by the sinks and the leases alike: `retry` within
    this dataflow's time budget (`CLICKSTREAM_STORAGE_RETRY_TIMEOUT`), every retry
    counted in `clickstream_storage_retries_total{dataflow}`.

    ```python
    retrying = StorageRetry("clickstream", settings.storage_retry_s)
    files = retrying(lambda: fs.find(base), f"list {base}")
    ```
    """

    def __init__(self, dataflow: str, budget_s: float) -> None:
        self.budget_s = budget_s
        self.counter = STORAGE_RETRIES.labels(dataflow)

    def __call__(self, action: Callable[[], T], what: str) -> T:
        return retry(action, what, give_up_after_s=self.budget_s, on_retry=self.counter.inc)


def retry(
    action: Callable[[], T],
    what: str,
    *,
    give_up_after_s: float,
    first_wait_s: float = 0.5,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run `action`, retrying transient storage errors with exponential backoff; an
    error that will not heal (see `is_transient`) raises `StorageFailure` at once.

    Waits 0.5 s, doubling up to 30 s between attempts. Once `give_up_after_s` have
    passed (`CLICKSTREAM_STORAGE_RETRY_TIMEOUT`), `/health`
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
