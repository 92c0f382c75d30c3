"""The runbook page of every SLO alert (docs/runbooks/<alert>.md), generated from slos/*.yaml.

    .venv/bin/python -m scripts.slo_runbooks            # exit 1 if a page is missing or out of date
    .venv/bin/python -m scripts.slo_runbooks --write    # write them

Each page comes from its SLO file alone (components/configs/slo.py `runbook`), plus the alerts of
rules/*.yaml that read a metric the SLI reads on the same job: they point at the cause and have
their own runbooks. tests/test_slo_rules.py fails while a page is not current.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.configs import slo as slo_config  # noqa: E402
from tests import promql_names as pn  # noqa: E402
from tests import stack_rules  # noqa: E402

RUNBOOKS = ROOT / "docs" / "runbooks"


def _jobs(matchers) -> list[tuple[str, str]]:
    return [(op, value) for name, op, value in matchers if name == "job"]


def _job_candidates(selector: pn.Selector) -> set[str] | None:
    """The jobs an SLI selector reads (None: any job)."""
    found = _jobs(selector.matchers)
    if not found:
        return None
    out: set[str] = set()
    for op, value in found:
        if op == "=":
            out.add(value)
        elif op == "=~" and re.fullmatch(r"[\w.|-]+", value):
            out |= set(value.split("|"))
        else:
            return None
    return out


def _matches(matchers, job: str) -> bool:
    for op, value in _jobs(matchers):
        if (op == "=" and job != value) or (op == "!=" and job == value) or \
                (op == "=~" and not re.fullmatch(value, job)) or (op == "!~" and re.fullmatch(value, job)):
            return False
    return True


def related_alerts(slo: slo_config.Slo, root: Path = ROOT) -> list[slo_config.RelatedAlert]:
    """Alerts of rules/*.yaml that read a metric of the SLI, on a job the SLI reads (through recording rules)."""
    contract = pn.load_contract(root)

    def raw(expr: str, seen=()) -> list[pn.Selector]:
        out = []
        for sel in pn.selectors(expr):
            if sel.name in contract.recording and sel.name not in seen:
                out += raw(contract.recording[sel.name], seen + (sel.name,))
            else:
                out.append(sel)
        return out

    wanted: dict[str, set[str] | None] = {}
    for which in ("error", "total"):
        for sel in raw(slo.query(which, "5m")):
            jobs = _job_candidates(sel)
            if sel.name in wanted and (wanted[sel.name] is None or jobs is None):
                wanted[sel.name] = None
            else:
                wanted[sel.name] = (wanted.get(sel.name) or set()) | (jobs or set()) if jobs is not None else None
    found = {}
    for rule in pn.iter_rules(root):
        if "alert" not in rule or rule["_file"].startswith(slo_config.RULE_FILE_PREFIX):
            continue
        for sel in raw(rule["expr"]):
            if sel.name not in wanted:
                continue
            jobs = wanted[sel.name]
            if jobs is None or any(_matches(sel.matchers, job) for job in jobs):
                found[rule["alert"]] = slo_config.RelatedAlert(rule["alert"], (rule.get("labels") or {}).get("severity"))
    return [found[name] for name in sorted(found)]


def pages(root: Path = ROOT) -> dict[Path, str]:
    out = {}
    for slo in stack_rules.slos(root):
        related = related_alerts(slo, root)
        for kind in slo_config.ALERT_KINDS:
            out[RUNBOOKS / f"{slo.alert(kind)}.md"] = slo_config.runbook(slo, kind, related)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write the pages instead of checking them")
    a = ap.parse_args(argv)
    stale = []
    for path, text in pages().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if a.write:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
        else:
            stale.append(str(path.relative_to(ROOT)))
    if stale:
        print("out of date (run python -m scripts.slo_runbooks --write): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
