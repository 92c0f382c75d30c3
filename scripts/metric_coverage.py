#!/usr/bin/env python3
"""How much of the application's metric contract is watched.

For every metric in metrics/catalog.yaml: is it shown on at least one
dashboard panel (dashboards/*.json), used by at least one alerting rule
(rules/*.yaml), or both? A metric counts as used when an expression names it
directly, through its histogram series (_bucket/_sum/_count), or through a
recording rule whose expression (recursively) uses it.

Prints the three shares, lists the metrics missing from dashboards and from
alerts, and exits 1 when the gated share is below --min (default 95, the
team's coverage target). The gate is the "both" share unless --gate says
otherwise.

    python scripts/metric_coverage.py [--min 95] [--gate both|dashboards|alerts] [--root .]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import promql_names as pn  # noqa: E402


def coverage(root: Path) -> dict:
    contract = pn.load_contract(root)
    catalog = sorted(contract.app)

    on_dashboards: dict[str, set[str]] = {m: set() for m in catalog}
    for path in pn.dashboard_files(root):
        d = pn.load_dashboard(path)
        for panel in pn.iter_panels(d):
            for t in panel.get("targets") or []:
                if not t.get("expr"):
                    continue
                for m in contract.base_metrics(t["expr"]):
                    on_dashboards[m].add(f"{path.stem}: {panel.get('title')}")

    in_alerts: dict[str, set[str]] = {m: set() for m in catalog}
    for rule in pn.iter_rules(root):
        if "alert" not in rule or not rule.get("expr"):
            continue
        for m in contract.base_metrics(rule["expr"]):
            in_alerts[m].add(rule["alert"])

    return {"catalog": catalog, "dashboards": on_dashboards, "alerts": in_alerts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min", type=float, default=95.0, help="minimum share in percent (default 95)")
    ap.add_argument("--gate", choices=("both", "dashboards", "alerts"), default="both",
                    help="which share must reach --min (default: both)")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root")
    ap.add_argument("-v", "--verbose", action="store_true", help="list where each metric is used")
    args = ap.parse_args(argv)

    cov = coverage(args.root)
    catalog = cov["catalog"]
    total = len(catalog)
    if total == 0:
        print("catalog is empty")
        return 1
    dash = {m for m in catalog if cov["dashboards"][m]}
    alert = {m for m in catalog if cov["alerts"][m]}
    both = dash & alert
    share = {
        "dashboards": 100.0 * len(dash) / total,
        "alerts": 100.0 * len(alert) / total,
        "both": 100.0 * len(both) / total,
    }

    print(f"catalog metrics:          {total}")
    print(f"on a dashboard panel:     {len(dash):3d}/{total}  {share['dashboards']:5.1f}%")
    print(f"in an alerting rule:      {len(alert):3d}/{total}  {share['alerts']:5.1f}%")
    print(f"both:                     {len(both):3d}/{total}  {share['both']:5.1f}%")
    for title, missing in (("not on any dashboard", sorted(set(catalog) - dash)),
                           ("not in any alerting rule", sorted(set(catalog) - alert))):
        print(f"\n{title} ({len(missing)}):")
        for m in missing:
            print(f"  - {m}")
        if not missing:
            print("  (none)")
    if args.verbose:
        print("\nusage:")
        for m in catalog:
            print(f"  {m}")
            print(f"    dashboards: {', '.join(sorted(cov['dashboards'][m])) or '-'}")
            print(f"    alerts:     {', '.join(sorted(cov['alerts'][m])) or '-'}")

    ok = share[args.gate] >= args.min
    print(f"\n{args.gate} coverage {share[args.gate]:.1f}% {'>=' if ok else '<'} {args.min:g}%: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
