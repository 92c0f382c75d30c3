"""Helpers to check generated configs with the real tools (built at the images' versions)."""

from __future__ import annotations

import subprocess


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)
