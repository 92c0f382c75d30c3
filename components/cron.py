"""Cron schedules as a Kubernetes CronJob reads them, and when one fires next.

Kubernetes parses ``spec.schedule`` with robfig/cron v3's ``ParseStandard``: five fields (minute,
hour, day of month, month, day of week), each a list of ``*`` / ``?`` / ``N`` / ``N-M`` with an
optional ``/step`` (``N/step`` meaning ``N-max/step``), month and weekday names (``jan``, ``mon``),
and the descriptors ``@yearly`` ... ``@hourly``. This module follows that parser (v3.0.1,
parser.go and spec.go) so that a schedule the settings accept is one the API server accepts, and
a Docker host, which has no CronJob, fires at the same minutes. When both day fields are
restricted a day matches either one, as in cron; ``@every`` is refused (not a calendar schedule).
Times are UTC, as the CronJob's without a time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_MONTHS = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names)
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _DAYS))
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
ALLOWED = ("a cron schedule of five fields (minute hour day-of-month month day-of-week, UTC) such as "
           "'0 6 * * 1' (Mondays 06:00), or @daily, @weekly, @monthly, @hourly")


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Field:
    values: frozenset
    star: bool  # `*` or `?` (robfig's starBit): matters for the two day fields


@dataclass(frozen=True)
class Schedule:
    text: str
    minute: Field
    hour: Field
    day: Field
    month: Field
    weekday: Field

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.day.values
        dow = (t.isoweekday() % 7) in self.weekday.values
        if self.day.star or self.weekday.star:
            return dom and dow
        return dom or dow

    def matches(self, t: datetime) -> bool:
        return (t.minute in self.minute.values and t.hour in self.hour.values and t.month in self.month.values
                and self._day_matches(t))

    def next_after(self, t: datetime) -> datetime:
        """The first minute strictly after ``t`` (aware, any zone) that the schedule fires at, in UTC."""
        t = t.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = t + timedelta(days=366 * 5)  # 29 February on a Monday comes back within 28 years; 5 covers any other
        while t < end:
            if t.month not in self.month.values:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hour.values:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute in self.minute.values:
                return t
            t += timedelta(minutes=1)
        raise CronError(f"{self.text!r} never fires (no such day)")


def _number(text: str, names: dict, where: str) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not (text.isascii() and text.isdigit()):  # Go's strconv.Atoi takes ASCII digits only
        raise CronError(f"{where}: {text!r} is not a number{' or a name' if names else ''}")
    return int(text)


def _field(text: str, name: str, low: int, high: int, names: dict) -> Field:
    values, star = set(), False
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: an empty list item in {text!r}")
        range_step = part.split("/")
        if len(range_step) > 2:
            raise CronError(f"{name}: too many slashes in {part!r}")
        bounds = range_step[0].split("-")
        if bounds[0] in ("*", "?"):
            if len(bounds) > 1:
                raise CronError(f"{name}: {part!r} is not a range")
            start, end, part_star = low, high, True
        else:
            if len(bounds) > 2:
                raise CronError(f"{name}: too many hyphens in {part!r}")
            start = _number(bounds[0], names, name)
            end = _number(bounds[1], names, name) if len(bounds) == 2 else start
            part_star = False
        step = 1
        if len(range_step) == 2:
            if not range_step[1].isdigit() or int(range_step[1]) == 0:
                raise CronError(f"{name}: the step of {part!r} must be a positive number")
            step = int(range_step[1])
            if len(bounds) == 1:
                end = high  # "N/step" means "N-max/step"
            if step > 1:
                part_star = False
        if start < low or end > high:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        if start > end:
            raise CronError(f"{name}: {part!r} begins after it ends")
        values.update(range(start, end + 1, step))
        star = star or part_star
    return Field(frozenset(values), star)


def parse(text: str) -> Schedule:
    """A schedule, or CronError saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise CronError("the schedule is empty")
    spec = text.strip()
    if spec.startswith("@"):
        if spec not in DESCRIPTORS:
            raise CronError(f"{spec!r} is not one of {', '.join(DESCRIPTORS)}")
        spec = DESCRIPTORS[spec]
    elif spec.upper().startswith(("TZ=", "CRON_TZ=")):
        raise CronError("a time zone in the schedule is refused by Kubernetes (schedules are UTC)")
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields, found {len(fields)}")
    parsed = [_field(f, name, low, high, names) for f, (name, low, high, names) in zip(fields, _FIELDS)]
    return Schedule(text.strip(), *parsed)


def problem(text) -> str | None:
    """What is wrong with a schedule, or None."""
    try:
        # A schedule that parses but names no day (30 February) would never run: refused too.
        parse(text).next_after(datetime.now(timezone.utc))
    except CronError as error:
        return str(error)
    return None
