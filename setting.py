"""How a setting is declared, read from the environment and documented; the bottom of
the house: it imports nothing of ours.

A settings class (`config.Settings`, `kafka_client.settings.KafkaSettings`) declares
each setting once, next to its field (`setting`): variable, default, lowest value and
doc. `declared` reads them, `settings_table` documents them, `to_env` writes them back
as variables (for tests and child processes). A bad value is a `ConfigError` whose
message is one line naming the variable; secrets are wrapped in `Secret`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field, fields
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message is one line, and the
    process exits with `exit_status` 2, which a supervisor should not restart into (the
    systemd unit's `RestartPreventExitStatus=2`)."""

    exit_status = 2


class Unreachable(ConfigError):
    """A service the run needs (the broker, the Schema Registry, the output's storage) does
    not answer at start: one line too, but exit status 75 (EX_TEMPFAIL), so that a
    supervisor restarts the run until the service is back. A crash during a broker outage
    then heals by itself."""

    exit_status = 75


class Secret:
    """A string that does not show itself in reprs, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def setting(var: str, default: T, doc: str, minimum: float | None = None) -> T:
    """A setting read from the environment variable `var`: its default, lowest value and
    doc, declared once, next to its field. `declared` reads it, `settings_table` documents
    it. The field's type says how to parse it (int, float, bool; `| None`: may be unset)."""
    found: T = field(default=default, metadata={"var": var, "doc": doc, "minimum": minimum})
    return found


def declared(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """The values of `cls`'s declared settings found in `env`, parsed and checked; a
    `ConfigError` naming the variable for a bad one."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if "var" not in f.metadata:
            continue
        kind = _KINDS[str(f.type).split("|")[0].strip()]
        var, minimum = f.metadata["var"], f.metadata["minimum"]
        if kind is bool:
            values[f.name] = parse_bool(env, var, bool(f.default))
        else:
            values[f.name] = parse(env, var, kind, f.default, minimum=minimum)
    return values


def to_env(settings: object) -> dict[str, str]:
    """The declared settings of a settings object as the variables that give them back
    (`declared(type(settings), to_env(settings))` reads the same values); unset ones
    are left out."""
    env = {}
    for f in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if "var" in f.metadata and value is not None:
            env[f.metadata["var"]] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


_KINDS: dict[str, Callable[[str], object]] = {"int": int, "float": float, "bool": bool, "str": str}


def settings_table(*classes: type) -> str:
    """The declared settings of `classes` as Markdown table rows (variable, default, doc),
    as docs/configuration.md shows them (a test keeps the two the same)."""
    rows = []
    for cls in classes:
        for f in fields(cls):
            if "var" in f.metadata:
                value = str(f.default).lower() if isinstance(f.default, bool) else f.default
                default = "unset" if f.default is None else f"`{value}`"
                rows.append(f"| `{f.metadata['var']}` | {default} | {f.metadata['doc']} |")
    return "\n".join(rows)


def parse(
    env: Mapping[str, str],
    var: str,
    kind: Callable[[str], T],
    default: T,
    *,
    minimum: float | None,
) -> T:
    """`env[var]` as `kind` (int, float, str), at least `minimum`; `default` when unset."""
    raw = env.get(var)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise ConfigError(f"{var}: expected {name}, got {raw!r}") from None
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{var}: must be at least {minimum}, got {raw!r}")
    return value


def parse_bool(env: Mapping[str, str], var: str, default: bool) -> bool:
    """`env[var]` as true (1, true, yes, on) or false (0, false, no, off)."""
    raw = env.get(var, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{var}: expected true or false, got {raw!r}")
