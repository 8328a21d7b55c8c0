"""Running dataflows as `python -m bytewax.run` processes, as users do."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any pipeline settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM", "KAFKA"))}
    return {**env, **settings}
