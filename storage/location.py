"""Where the output is (local disk, GCS through fsspec; Delta's object_store options),
the tables found there, and a check of the output before a run reads anything: a run
that cannot write its output stops with one line naming the location and the cause.
Storage errors and retries are `storage.retries`.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import fsspec

from config import gcs_emulator
from setting import ConfigError, Unreachable
from storage.retries import cause, is_transient

GCS_ENDPOINT = "https://storage.googleapis.com"


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for an output URL: the GCS emulator when STORAGE_EMULATOR_HOST is set.

    Passing the endpoint explicitly (rather than letting gcsfs read the variable) also
    keeps fsspec's instance cache from handing out a client for another endpoint.
    Otherwise credentials come the usual Google way (application default credentials,
    GOOGLE_APPLICATION_CREDENTIALS).
    """
    emulator, _ = gcs_emulator()
    if url.startswith(("gs://", "gcs://")) and emulator:
        return {"endpoint_url": emulator, "token": "anon"}
    return {}


def delta_storage_options(url: str) -> dict[str, str]:
    """deltalake (object_store) options for an output URL.

    On GCS, credentials come the Google way as for fsspec (GOOGLE_APPLICATION_CREDENTIALS,
    application default credentials). Against the emulator, object_store needs a
    service-account file naming the endpoint; `STORAGE_EMULATOR_XML_HOST`, when set, is
    the endpoint for object_store's XML API calls (see `infra.gcs_emulator`).
    """
    _, emulator = gcs_emulator()
    if not url.startswith(("gs://", "gcs://")) or not emulator:
        return {}
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


def _silent_endpoint(url: str, timeout_s: float = 10.0) -> str | None:
    """Why the storage endpoint of a `gs://` URL takes no TCP connection (refused, or no
    answer within `timeout_s`); None when it does, or when a proxy stands in between."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = storage_options(url).get("endpoint_url") or GCS_ENDPOINT
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError as ex:
        return f"cannot reach {endpoint}: {ex.strerror or type(ex).__name__}"
    return None


@contextmanager
def output_errors(url: str) -> Iterator[None]:
    """A storage error while the run starts, in one line naming CLICKSTREAM_OUTPUT:
    storage that does not answer (after gcsfs's own retries) may come back, so exit 75
    (`Unreachable`) and be started again, where a bad location or permission exits 2
    (`ConfigError`)."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as ex:
        kind = Unreachable if is_transient(ex) else ConfigError
        raise kind(f"CLICKSTREAM_OUTPUT {url}: {cause(ex)}") from None


def check_output(url: str) -> None:
    """Make sure the run can write to `url`: create it, write a probe and remove it.

    A `ConfigError` naming CLICKSTREAM_OUTPUT, the location and the cause otherwise
    (`Unreachable` when the storage does not answer); nothing is left behind.
    """
    with output_errors(url):
        fs, root = output_fs(url)
        if is_local(fs):
            try:
                fs.makedirs(root, exist_ok=True)
            except OSError as ex:
                raise ConfigError(
                    f"CLICKSTREAM_OUTPUT {url}: cannot create the directory: {cause(ex)}"
                ) from None
        else:
            silent = _silent_endpoint(url)
            if silent:
                # gcsfs would retry for a minute first; a supervisor starts the run again
                raise Unreachable(f"CLICKSTREAM_OUTPUT {url}: {silent}")
            bucket = root.split("/", 1)[0]
            if not fs.exists(bucket):
                raise ConfigError(f"CLICKSTREAM_OUTPUT {url}: bucket {bucket} does not exist")
        probe = f"{root}/.clickstream-probe-{uuid.uuid4().hex}"
        with fs.open(probe, "wb") as f:
            f.write(b"probe")
        fs.rm(probe)
