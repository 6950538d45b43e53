"""``nb2pipe schedule ...`` and ``nb2pipe scheduler``: registered through :data:`nb2pipe.cli.COMMAND_MODULES`.

Everything heavy is imported inside the handlers so ``nb2pipe --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ..errors import Nb2PipeError
from ..parameters import add_parameter_options

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _seconds(text: str) -> float:
    if text.strip() == "0":
        return 0.0
    return _positive(text)


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def register(sub: Any, export_sub: Any) -> None:
    """Add ``schedule`` (with its subcommands) and ``scheduler`` to the ``nb2pipe`` parser."""
    del export_sub
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", metavar="DIR", help="run store folder (default: $NB2PIPE_HOME or .nb2pipe)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    schedule = sub.add_parser("schedule", help="cron schedules of parameterized notebook jobs and pipeline runs")
    ssub = schedule.add_subparsers(dest="schedule_command", metavar="SUBCOMMAND")
    ssub.required = True

    p = ssub.add_parser("add", parents=[home, as_json], help="add a schedule (shows its next five fire times)")
    p.add_argument("name", help="the schedule's name (letters, digits, '.', '_', '-')")
    p.add_argument("target", help="a notebook (a tracked job) or a converted pipeline directory (a pipeline run)")
    p.add_argument("--cron", required=True, metavar="EXPR", help='cron expression, e.g. "30 2 * * *"')
    add_parameter_options(p, files=False, help="parameter for every run, checked now against the target (repeatable)")
    p.add_argument("--timezone", metavar="TZ", help="IANA zone the cron times are read in (default: this machine's)")
    p.add_argument(
        "--catchup",
        choices=("none", "latest", "all"),
        default="latest",
        help="fires missed while no scheduler ran: run none, only the latest (default), or all",
    )
    p.add_argument("--max-concurrent", type=_count(1), default=1, metavar="N", help="live runs at most (default 1)")
    p.add_argument("--retries", type=_count(0), default=0, metavar="N", help="retries of a failed run (default 0)")
    p.add_argument("--retry-delay", type=_seconds, default=60.0, metavar="S", help="seconds before a retry (60)")
    p.add_argument("--timeout", type=_positive, metavar="S", help="kill a run after S seconds (timed-out)")
    p.set_defaults(handler=_cmd_add)

    p = ssub.add_parser("list", parents=[home, as_json], help="list schedules with their next fire time")
    p.set_defaults(handler=_cmd_list)
    p = ssub.add_parser("show", parents=[home, as_json], help="one schedule, its next fire times and last runs")
    p.add_argument("name")
    p.set_defaults(handler=_cmd_show)
    for verb, text, handler in (
        ("pause", "stop firing until resumed (fires meanwhile are recorded as skipped)", _cmd_pause),
        ("resume", "fire again from now on", _cmd_resume),
        ("rm", "remove a schedule; its history and an audit record are kept", _cmd_rm),
    ):
        p = ssub.add_parser(verb, parents=[home], help=text)
        p.add_argument("name")
        p.set_defaults(handler=handler)
    p = ssub.add_parser("history", parents=[home, as_json], help="fire times and the runs they started, newest first")
    p.add_argument("name")
    p.add_argument("-n", "--limit", type=_count(1), default=50, metavar="N", help="show at most N fires (50)")
    p.set_defaults(handler=_cmd_history)
    p = ssub.add_parser("run-now", parents=[home], help="fire a schedule now, wait for the run and show its ending")
    p.add_argument("name")
    p.add_argument("--no-wait", action="store_true", help="start it and return; a running scheduler records the end")
    p.set_defaults(handler=_cmd_run_now)

    p = sub.add_parser("scheduler", parents=[home], help="run due schedules in the foreground (logs to stderr)")
    p.add_argument("--once", action="store_true", help="start what is due now, wait for those runs, and exit")
    p.add_argument("--interval", type=_positive, default=1.0, metavar="S", help="seconds between ticks (1)")
    p.add_argument(
        "--grace", type=_positive, default=60.0, metavar="S", help="how late a fire may start and be on time (60)"
    )
    p.add_argument(
        "--standbys",
        type=_count(0),
        default=2,
        metavar="N",
        help="notebook runs due within --warm-ahead get a standby job process with its kernel already started, "
        "at most N at once (2; 0: every run starts cold)",
    )
    p.add_argument(
        "--warm-ahead", type=_positive, default=60.0, metavar="S", help="how far ahead a fire gets a standby (60)"
    )
    p.set_defaults(handler=_cmd_scheduler)


# -- handlers ---------------------------------------------------------------------------------------------------


def _cmd_add(args: argparse.Namespace) -> int:
    import time

    from .cron import Cron, iso_utc, local
    from .store import ScheduleStore
    from .targets import default_timezone, resolve_target

    if not NAME_RE.match(args.name):
        raise Nb2PipeError(f"schedule name {args.name!r}: use letters, digits, '.', '_' and '-' (at most 100)")
    tz = args.timezone or default_timezone()
    cron = Cron(args.cron, tz)
    kind, target, parameters = resolve_target(args.target, [tuple(p) for p in args.parameter])
    now = time.time()
    upcoming = cron.upcoming(now, 5)
    store = ScheduleStore.open(args.home)
    try:
        schedule = store.add(
            name=args.name,
            kind=kind,
            target=target,
            cron=args.cron,
            timezone=tz,
            parameters=parameters,
            catchup=args.catchup,
            max_concurrent=args.max_concurrent,
            retries=args.retries,
            retry_delay=args.retry_delay,
            timeout=args.timeout,
            now=now,
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps({**_schedule_json(schedule), "upcoming": [iso_utc(t) for t in upcoming]}, indent=2))
        return 0
    print(f"added schedule {schedule.name}: {kind} {target}, cron {args.cron!r} in {tz}")
    if parameters:
        print("  parameters: " + ", ".join(f"{k}={v!r}" for k, v in parameters.items()))
    print("  next fire times:")
    for t in upcoming:
        print(f"    {local(t, tz)}   ({iso_utc(t)})")
    return 0


def _schedule_json(s: Any) -> dict[str, Any]:
    from .cron import iso_utc

    return {
        "name": s.name,
        "kind": s.kind,
        "target": s.target,
        "cron": s.cron,
        "timezone": s.timezone,
        "parameters": dict(s.parameters),
        "catchup": s.catchup,
        "max_concurrent": s.max_concurrent,
        "retries": s.retries,
        "retry_delay": s.retry_delay,
        "timeout": s.timeout,
        "paused": s.paused,
        "next_fire": iso_utc(s.next_fire) if s.next_fire is not None and not s.paused else None,
        "removed": s.deleted_at is not None,
    }


def _cmd_list(args: argparse.Namespace) -> int:
    from .cron import local
    from .store import ScheduleStore

    store = ScheduleStore.open(args.home)
    try:
        schedules = store.all()
    finally:
        store.close()
    if args.json:
        print(json.dumps([_schedule_json(s) for s in schedules], indent=2))
        return 0
    if not schedules:
        print("no schedules (add one: nb2pipe schedule add NAME TARGET --cron EXPR)")
    for s in schedules:
        state = "paused" if s.paused else (local(s.next_fire, s.timezone) if s.next_fire else "never again")
        print(f"{s.name:24} {s.cron:16} {s.timezone:18} next {state:28} {s.kind} {s.target}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    import time

    from .cron import Cron, iso_utc, local
    from .store import ScheduleStore

    store = ScheduleStore.open(args.home)
    try:
        s = store.get(args.name)
        recent = store.history(s.id, limit=5)
    finally:
        store.close()
    upcoming = [] if s.paused else Cron(s.cron, s.timezone).upcoming(max(time.time(), s.cursor), 5)
    if args.json:
        out = {**_schedule_json(s), "upcoming": [iso_utc(t) for t in upcoming], "recent": _fires_json(recent)}
        print(json.dumps(out, indent=2))
        return 0
    print(f"schedule {s.name}{' (paused)' if s.paused else ''}")
    print(f"  {s.kind} {s.target}")
    print(f"  cron {s.cron!r} in {s.timezone}; catchup {s.catchup}, max-concurrent {s.max_concurrent}")
    timeout = f"{s.timeout:g} s" if s.timeout else "none"
    print(f"  retries {s.retries} (delay {s.retry_delay:g} s), timeout {timeout}")
    if s.parameters:
        print("  parameters: " + ", ".join(f"{k}={v!r}" for k, v in s.parameters.items()))
    for t in upcoming:
        print(f"  next {local(t, s.timezone)}")
    _print_fires(recent, s.timezone)
    return 0


def _cmd_pause(args: argparse.Namespace) -> int:
    import time

    from .store import ScheduleStore

    store = ScheduleStore.open(args.home)
    try:
        store.pause(args.name, time.time())
    finally:
        store.close()
    print(f"paused {args.name}")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    import time

    from .store import ScheduleStore

    store = ScheduleStore.open(args.home)
    try:
        _, skipped = store.resume(args.name, time.time())
    finally:
        store.close()
    note = f" ({skipped} fire(s) while paused recorded as skipped)" if skipped else ""
    print(f"resumed {args.name}{note}")
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    import time

    from .store import ScheduleStore

    store = ScheduleStore.open(args.home)
    try:
        store.remove(args.name, time.time())
    finally:
        store.close()
    print(f"removed {args.name}; its history stays (nb2pipe schedule history {args.name})")
    return 0


def _fires_json(fires: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from .cron import iso_utc

    return [
        {
            "fire_time": iso_utc(f["fire_time"]),
            "trigger": f["trigger"],
            "status": f["status"],
            "reason": f["reason"],
            "attempts": f["attempts"],
            "runs": [
                {
                    "run_id": a["run_id"],
                    "attempt": a["attempt"],
                    "status": a["status"],
                    "detail": a["detail"],
                    "log": a["log_path"],
                }
                for a in f["runs"]
            ],
        }
        for f in fires
    ]


def _print_fires(fires: list[dict[str, Any]], tz: str) -> None:
    from .cron import local

    for f in fires:
        runs = ", ".join(f"{a['run_id']} {a['status']}" for a in f["runs"])
        reason = f" ({f['reason']})" if f["reason"] and f["status"] in ("skipped", "pending") else ""
        manual = " run-now" if f["trigger"] == "manual" else ""
        print(f"  {local(f['fire_time'], tz)}{manual}  {f['status']:9}{reason}  {runs}".rstrip())


def _cmd_history(args: argparse.Namespace) -> int:
    from .store import ScheduleStore

    store = ScheduleStore.open(args.home)
    try:
        s = store.get_any(args.name)
        fires = store.history(s.id, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps(_fires_json(fires), indent=2))
        return 0
    removed = " (removed)" if s.deleted_at is not None else ""
    print(f"schedule {s.name}{removed}: {len(fires)} fire(s), newest first")
    _print_fires(fires, s.timezone)
    return 0


def _cmd_run_now(args: argparse.Namespace) -> int:
    from .loop import Scheduler

    scheduler = Scheduler(args.home, standbys=0)  # one run, now: nothing to start ahead
    try:
        run_id = scheduler.run_now(args.name)
        if run_id is None:
            print(f"{args.name}: queued; max-concurrent reached, a running scheduler will start it")
            return 0
        print(f"{args.name}: started run {run_id}", flush=True)
        if args.no_wait:
            return 0
        report = scheduler.drain()
        status = dict(report.finished).get(run_id, "unknown")
        print(f"{args.name}: run {run_id} {status}")
        return 0 if status == "succeeded" else 1
    finally:
        scheduler.stop()
        scheduler.close()


def _cmd_scheduler(args: argparse.Namespace) -> int:
    import logging

    from .loop import Scheduler, install_signal_handlers

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("nb2pipe.scheduler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    standbys = 0 if args.once else args.standbys  # --once exits after this tick: no fire to start ahead for
    scheduler = Scheduler(
        args.home, interval=args.interval, grace=args.grace, standbys=standbys, warm_ahead=args.warm_ahead
    )
    restore = install_signal_handlers(scheduler)
    try:
        if args.once:
            report = scheduler.tick()
            done = scheduler.drain()
            failed = [run for run, status in [*report.finished, *done.finished] if status != "succeeded"]
            logger.info("once: started %d run(s), %d did not succeed", len(report.launched), len(failed))
            return 1 if failed else 0
        scheduler.run()
        return 0
    finally:
        restore()
        scheduler.stop()
        scheduler.close()
        logger.removeHandler(handler)
