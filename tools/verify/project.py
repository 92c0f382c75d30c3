"""Where the checkout is and the project's name (the Pulumi project, the config key prefix)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT = "football-monitoring"
