"""The school calendar: what kind of day a local date is, and which known events fall on it.

Spike baselines compare like with like: a school day's 8 am with other school days' 8 am, a
weekend with weekends, a break with breaks. Day types are ``school_day``, ``weekend`` and
``break`` (holidays, vacations, summer, and days the schools are closed, such as a snow day).

The calendar file (TOML, see ``calendar.example.toml``; dates are local calendar dates)::

    federal_holidays = true        # US federal holidays are breaks (the default)
    weekend = ["saturday", "sunday"]

    [[breaks]]                     # no school: day type "break"; `end` is inclusive, optional
    name = "Winter break"
    start = 2025-12-22
    end = 2026-01-02

    [[events]]                     # known events: explain volume, kept out of the baseline
    name = "Snow day"
    kind = "snow_day"              # snow_day and closure also make the day a break
    start = 2026-01-15
    # end = ..., school = "Lincoln Elementary", mute_alerts = true

Known events mirror the ``calendar_events`` table (name, kind, starts_on, ends_on, school,
mute_alerts); a closure with a ``school`` leaves the district's day type alone. Event days are
not ordinary days, so the spike baseline never learns from them; the alert engine marks spikes
on them "expected" and mutes them when ``mute_alerts`` is set.
Without a file: Monday to Friday are school days, weekends are weekends, and US federal
holidays are breaks.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

DAY_TYPES = ("school_day", "weekend", "break")
CLOSURE_KINDS = frozenset({"snow_day", "closure"})
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Period:
    """A named span of local dates, both ends included."""

    name: str
    start: date
    end: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end


@dataclass(frozen=True)
class KnownEvent:
    """A known event (first day of school, snow day, bond vote): fields of ``calendar_events``."""

    name: str
    kind: str
    starts_on: date
    ends_on: date
    school: str | None = None
    mute_alerts: bool = False

    @property
    def closes_schools(self) -> bool:
        """Whether the event means no school (its days are breaks)."""
        return self.kind in CLOSURE_KINDS

    def covers(self, day: date) -> bool:
        """Whether ``day`` is one of the event's days."""
        return self.starts_on <= day <= self.ends_on


@dataclass(frozen=True)
class SchoolCalendar:
    """Day types and known events of a district; the default knows weekends and federal
    holidays only."""

    breaks: tuple[Period, ...] = ()
    events: tuple[KnownEvent, ...] = ()
    federal_holidays: bool = True
    weekend: frozenset[int] = field(default_factory=lambda: frozenset({5, 6}))

    def day_type(self, day: date) -> str:
        """``school_day``, ``weekend`` or ``break`` for a local date."""
        if any(day in period for period in self.breaks) or any(
            event.closes_schools and event.covers(day) and event.school is None
            for event in self.events
        ):
            return "break"
        if day.weekday() in self.weekend:
            return "weekend"
        if self.federal_holidays and (
            day in us_federal_holidays(day.year) or day in us_federal_holidays(day.year + 1)
        ):  # 1 January on a Saturday is observed on 31 December
            return "break"
        return "school_day"

    def events_on(self, day: date) -> list[KnownEvent]:
        """The known events covering a local date."""
        return [event for event in self.events if event.covers(day)]

    def is_ordinary(self, day: date) -> bool:
        """Whether the baseline may learn from ``day`` (no known event on it)."""
        return not self.events_on(day)


@cache
def us_federal_holidays(year: int) -> frozenset[date]:
    """US federal holidays of ``year`` as observed (Saturday → Friday, Sunday → Monday)."""

    def nth(weekday: int, month: int, n: int) -> date:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))

    def last(weekday: int, month: int) -> date:
        end = date(year, month + 1, 1) - timedelta(days=1)
        return end - timedelta(days=(end.weekday() - weekday) % 7)

    def observed(day: date) -> date:
        shift = {5: -1, 6: 1}.get(day.weekday(), 0)
        return day + timedelta(days=shift)

    fixed = [date(year, 1, 1), date(year, 6, 19), date(year, 7, 4), date(year, 11, 11)]
    fixed.append(date(year, 12, 25))
    floating = [
        nth(0, 1, 3),  # Martin Luther King Jr. Day
        nth(0, 2, 3),  # Washington's Birthday
        last(0, 5),  # Memorial Day
        nth(0, 9, 1),  # Labor Day
        nth(0, 10, 2),  # Columbus Day / Indigenous Peoples' Day
        nth(3, 11, 4),  # Thanksgiving
    ]
    return frozenset([observed(day) for day in fixed] + floating)


def load_calendar(path: Path | None) -> SchoolCalendar:
    """The calendar in ``path``; no path or a missing file gives the default calendar.

    Raises ``ValueError`` naming the file and entry when the file is malformed.
    """
    if path is None or not path.exists():
        return SchoolCalendar()
    with path.open("rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    try:
        return parse_calendar(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def parse_calendar(data: dict[str, Any]) -> SchoolCalendar:
    """A calendar from the parsed TOML document (see the module docstring)."""
    unknown = set(data) - {"federal_holidays", "weekend", "breaks", "events"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    weekend_names = data.get("weekend", ["saturday", "sunday"])
    bad = [name for name in weekend_names if str(name).lower() not in WEEKDAY_NAMES]
    if bad:
        raise ValueError(f"weekend: unknown day names {bad}")
    breaks = tuple(Period(*_span(entry, "breaks")) for entry in data.get("breaks", []))
    events = tuple(_event(entry) for entry in data.get("events", []))
    return SchoolCalendar(
        breaks=breaks,
        events=events,
        federal_holidays=bool(data.get("federal_holidays", True)),
        weekend=frozenset(WEEKDAY_NAMES.index(str(name).lower()) for name in weekend_names),
    )


def _span(entry: dict[str, Any], table: str) -> tuple[str, date, date]:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"[[{table}]] entry {entry!r} needs a name")
    start = entry.get("start")
    end = entry.get("end", start)
    if not all(isinstance(d, date) and not isinstance(d, datetime) for d in (start, end)):
        raise ValueError(f"[[{table}]] {name!r}: start and end must be dates (YYYY-MM-DD)")
    if end < start:
        raise ValueError(f"[[{table}]] {name!r}: end {end} is before start {start}")
    return name, start, end


def _event(entry: dict[str, Any]) -> KnownEvent:
    name, start, end = _span(entry, "events")
    school = entry.get("school")
    if school is not None and not isinstance(school, str):
        raise ValueError(f"[[events]] {name!r}: school must be a string")
    return KnownEvent(
        name=name,
        kind=str(entry.get("kind", "event")),
        starts_on=start,
        ends_on=end,
        school=school,
        mute_alerts=bool(entry.get("mute_alerts", False)),
    )
