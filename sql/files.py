"""A folder of `.sql` files, each declaring one table or stream named after its file."""

from __future__ import annotations

import re
from pathlib import Path

from setting import ConfigError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sql_files(
    folder: str | Path, variable: str, what: str, reserved: frozenset[str] = frozenset()
) -> list[Path]:
    """The `.sql` files of `folder` (the setting `variable`), sorted; `ConfigError` when it
    is no folder, holds none, or a file's name is no name for a `what`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{variable}: {folder} is not a folder of .sql files")
    files = sorted(folder.glob("*.sql"))
    if not files:
        raise ConfigError(f"{variable}: {folder} holds no .sql file")
    for path in files:
        if not NAME.match(path.stem) or path.stem.lower() in reserved:
            besides = f"; not {' or '.join(sorted(reserved))}" if reserved else ""
            raise ConfigError(
                f"{path}: a {what} is named after its file; {path.stem!r} is not a name for "
                f"one (letters, digits and _{besides})"
            )
    return files
