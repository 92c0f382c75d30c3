"""The snapshot lifecycle policy keeps what logging.snapshot promises: every snapshot for
logging.snapshot.retentionDays, whatever Elasticsearch cron logging.snapshot.schedule is.

Derived from the Elasticsearch 8.19 source, not from running it (nothing Elastic runs on this machine):
SnapshotRetentionConfiguration deletes, before it looks at any snapshot's age, the oldest successful
snapshots beyond max_count (its tests: testMaximum deletes four of nine snapshots that never expire), so
max_count must hold every snapshot younger than expire_after; it parses max_count as an int and wants it
at least 1 and at least min_count. The runs per day each schedule below makes are read from Cron.java
(a fork of Quartz's CronExpression): its documented "0/15" is 0, 15, 30, 45, "5/15" is 5, 20, 35, 50,
an overflowing range "22-2" is 22, 23, 0, 1, 2, and the day fields only leave days out.
"""

from __future__ import annotations

import json

import pytest

from components.logging import configs
from tests.conftest import run_on_kubernetes
from tools import offline

# schedule -> the most runs in 24 hours
SCHEDULES = {
    "0 30 1 * * ?": 1,  # prod's: 01:30 every day
    "30 10 3 ? * SUN": 1,  # weekly: at most one a day
    "0 0 12 L * ?": 1,  # the last day of each month
    "0 0 */6 * * ?": 4,
    "0 0 22-2 * * ?": 5,
    "0 0,30 8-17 ? * MON-FRI": 20,
    "0 0 0/2 * * ? 2030": 12,  # with the optional year
    "0 10-50/20 * * * ?": 3 * 24,
    "0 0/15 * * * ?": 96,  # as often as slm.minimum_interval (15m by default) lets a policy run
    "0 5/15 * * * ?": 96,
    "*/30 * * * * ?": 2 * 60 * 24,
}
RETENTION_DAYS = [1, 7, 30, 90, 365, 3650]  # logging.snapshot.retentionDays runs from 1 to 3650


def kept_at_most(policy: dict, runs_per_day: int, days: int) -> int:
    """Snapshots the policy may hold that are younger than expire_after: a window of ``days`` days holds
    runs_per_day * days runs, and one more falls on its edge."""
    assert policy["retention"]["expire_after"] == f"{days}d"
    return runs_per_day * days + 1


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_max_count_keeps_every_unexpired_snapshot(schedule):
    for days in RETENTION_DAYS:
        policy = configs.slm_policy(schedule, days)
        retention = policy["retention"]
        assert policy["schedule"] == schedule
        assert retention["max_count"] >= kept_at_most(policy, SCHEDULES[schedule], days), (schedule, days)
        assert 1 <= retention["min_count"] <= retention["max_count"] <= 2**31 - 1
        # Still a cap: a day's runs above the promise, not unbounded.
        assert retention["max_count"] <= max(retention["min_count"], SCHEDULES[schedule] * (days + 1))


def test_the_most_frequent_schedule_and_longest_retention_fit_in_an_int():
    retention = configs.slm_policy("* * * * * ?", max(RETENTION_DAYS))["retention"]
    assert 24 * 60 * 60 * max(RETENTION_DAYS) < retention["max_count"] <= 2**31 - 1


@pytest.mark.parametrize("snapshot", [
    {},  # prod's own: nightly, 90 days
    {"schedule": "0 0 * * * ?", "retentionDays": 30},  # hourly: 720 snapshots within the retention
    {"schedule": "0 30 1 * * ?", "retentionDays": 3650},
])
def test_the_rendered_policy_keeps_what_the_settings_promise(prod, snapshot):
    result = offline.run("prod", {"logging": {"snapshot": snapshot}}) if snapshot else prod
    policy = json.loads(result.one("ConfigMap", "logging-bootstrap-policies")["data"]["slm-policy.json"])
    schedule, days = policy["schedule"], int(policy["retention"]["expire_after"].removesuffix("d"))
    assert (schedule, days) == (snapshot.get("schedule", "0 30 1 * * ?"), snapshot.get("retentionDays", 90))
    runs_per_day = {"0 30 1 * * ?": 1, "0 0 * * * ?": 24}[schedule]
    assert policy["retention"]["max_count"] >= kept_at_most(policy, runs_per_day, days)


def test_snapshots_on_dev_on_kubernetes_follow_the_same_rule():
    result = run_on_kubernetes("dev", {"logging": {"snapshot": {
        "enabled": True, "type": "fs", "claimName": "log-snapshots", "schedule": "0 0/15 * * * ?", "retentionDays": 7}}})
    policy = json.loads(result.one("ConfigMap", "logging-bootstrap-policies")["data"]["slm-policy.json"])
    assert policy["retention"]["max_count"] >= kept_at_most(policy, 96, 7)
