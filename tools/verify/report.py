"""Results and the report: one line per result, details indented, then a summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, TextIO

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass
class Result:
    status: str  # PASS | WARN | FAIL | SKIP
    check: str  # e.g. prometheus.targets
    summary: str  # what was checked and the numbers, one line
    details: list[str] = field(default_factory=list)  # one item per line (down targets, bad rules...)
    action: str = ""  # what to do (failures and warnings)


class Report:
    """Prints results as they come (one line each, details indented), then a summary."""

    def __init__(self, out: TextIO, *, verbose: bool = False, redact: Iterable[str] = ()) -> None:
        self.out, self.verbose = out, verbose
        self.redact = [s for s in redact if s and len(s) >= 4]
        self.results: list[Result] = []

    def _clean(self, text: str) -> str:
        for secret in self.redact:  # belt and braces: no check ever formats a secret
            text = text.replace(secret, "****")
        return text

    def line(self, text: str = "") -> None:
        self.out.write(self._clean(text) + "\n")
        self.out.flush()

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.line(f"{result.status}  {result.check:<34} {result.summary}")
        if result.status in (FAIL, WARN) or self.verbose:
            for detail in result.details:
                self.line(f"        {detail}")
        if result.action and result.status in (FAIL, WARN):
            self.line(f"        what to do: {result.action}")

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    def exit_code(self) -> int:
        return 1 if self.counts()[FAIL] else 0

    def summary(self) -> None:
        c = self.counts()
        verdict = "FAILED" if c[FAIL] else "OK"
        self.line()
        self.line(f"{c[PASS]} passed, {c[WARN]} warnings, {c[FAIL]} failed, {c[SKIP]} skipped: {verdict} "
                  f"(exit {self.exit_code()})")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
