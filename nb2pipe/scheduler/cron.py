"""Cron expressions and time zones: when a schedule fires, as UTC instants.

Parsing and iteration are croniter's (5 fields, or 6 with seconds last); this module adds the time zone, checks the
expression up front with a clear message, and fixes the contract the rest of the scheduler relies on: fire times are
UTC epoch seconds, strictly increasing, and iterating from any fire time gives the same sequence as iterating from
the start (so a scheduler that restarts from its stored cursor fires exactly what one that never stopped would).

Daylight saving, as croniter computes it in the schedule's zone:

- spring forward: a wall time that does not exist that day (02:30 when clocks jump 02:00 -> 03:00) fires once, at
  the first instant after the gap (03:00 local);
- fall back: when clocks go back (03:00 -> 02:00), an expression with a fixed hour field (``30 2 * * *``,
  ``*/20 1-3 * * *``) fires once per wall time, at its first occurrence, as Vixie cron does; croniter alone would
  fire a daily 02:30 job twice that night. An expression whose hour field is ``*`` (hourly, every 15 minutes) fires
  in both copies of the repeated hour, because real time passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import Nb2PipeError


class CronError(Nb2PipeError):
    """A cron expression or a time zone that cannot be used."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Berlin``), or a :class:`CronError` with a close match."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        import difflib
        import zoneinfo

        close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (use an IANA name such as 'Europe/Berlin' or 'UTC')"
        raise CronError(f"unknown time zone {name!r}{hint}") from None


@dataclass(frozen=True)
class Cron:
    """A validated cron expression in a time zone."""

    #: The expression as given: 5 fields (minute hour day month weekday) or 6 (with seconds last).
    expr: str
    #: IANA zone name the expression's wall times are read in.
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        from croniter import croniter

        zone(self.timezone)
        fields = self.expr.split()
        if len(fields) not in (5, 6):
            raise CronError(
                f"cron expression {self.expr!r} has {len(fields)} fields; expected 5 (minute hour day month weekday) "
                "or 6 (the same, then seconds)"
            )
        try:
            croniter(self.expr, datetime(2000, 1, 1, tzinfo=UTC))
        except (ValueError, KeyError) as exc:  # croniter's errors derive from ValueError
            raise CronError(f"cron expression {self.expr!r} is not valid: {exc}") from None
        if self.next_after(0.0) is None:
            raise CronError(f"cron expression {self.expr!r} never fires (e.g. 30 February)")

    def _iter(self, after: float) -> Iterator[float]:
        """Fire times after ``after``. One croniter per expression is re-seeded, not rebuilt (parsing is the cost)."""
        from croniter import CroniterError, croniter

        tz = zone(self.timezone)
        fixed_hour = self.expr.split()[1] != "*"
        it = self.__dict__.get("_croniter")
        start = datetime.fromtimestamp(after, tz)
        if it is None:
            it = croniter(self.expr, start)
            object.__setattr__(self, "_croniter", it)  # a cache, not state: frozen fields are unchanged
        else:
            it.set_current(start, force=True)
        while True:
            try:
                t = float(it.get_next(float))
            except CroniterError:
                return
            if fixed_hour and datetime.fromtimestamp(t, tz).fold == 1:
                continue  # the second copy of a repeated wall time (fall back): it already fired
            yield t

    def next_after(self, after: float) -> float | None:
        """The first fire time strictly after ``after`` (epoch seconds), or None when there is none."""
        return next(self._iter(after), None)

    def fire_times(self, after: float, until: float, *, limit: int | None = None) -> list[float]:
        """Fire times ``t`` with ``after < t <= until``, in order (at most ``limit`` of them)."""
        return self.window(after, until, limit=limit)[0]

    def window(self, after: float, until: float, *, limit: int | None = None) -> tuple[list[float], float | None]:
        """``fire_times(after, until, limit)`` and the fire time that follows them, from one pass."""
        out: list[float] = []
        for t in self._iter(after):
            if t > until or (limit is not None and len(out) >= limit):
                return out, t
            out.append(t)
        return out, None

    def upcoming(self, after: float, n: int = 5) -> list[float]:
        """The next ``n`` fire times after ``after``: shown when a schedule is added, so a typo is seen at once."""
        out: list[float] = []
        for t in self._iter(after):
            out.append(t)
            if len(out) == n:
                break
        return out


def iso_utc(t: float) -> str:
    """``2026-03-29T01:00:00Z``: how fire times are passed to runs and shown in JSON."""
    stamp = datetime.fromtimestamp(t, UTC)
    text = stamp.isoformat(timespec="milliseconds" if t % 1 else "seconds")
    return text.replace("+00:00", "Z")


def local(t: float, tz: str) -> str:
    """``2026-03-29 03:00:00 CEST``: a fire time as the schedule's owner reads it."""
    return datetime.fromtimestamp(t, zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")
