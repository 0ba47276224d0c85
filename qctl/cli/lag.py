"""``qctl lag``: consumer lag of Kafka groups and RabbitMQ queues, once or live.

One snapshot by default (table, json, yaml or the Prometheus text format), with
``--threshold``/``--max-time-lag`` turning it into a check that exits 6. ``--watch``
opens the live view when stdout is a terminal, and otherwise prints one snapshot per
interval for logs. The work happens in ``qctl.lag``; the live view is ``qctl.tui``,
imported only when it starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from qctl.backends.base import Backend, capabilities
from qctl.cli import error_line
from qctl.cli.app import App, pass_app
from qctl.cli.options import FiniteFloatRange, backend_option, output_option, timeout_option
from qctl.errors import (
    ExitCode,
    QctlError,
    ThresholdExceeded,
    UnreachableError,
    UnsupportedCapability,
    UsageError,
)
from qctl.lag import format as fmt
from qctl.lag import jsonout
from qctl.lag.collect import LagCollector, Selection, exit_code_for
from qctl.lag.history import PendingHistory, history_path
from qctl.lag.jsonout import plain
from qctl.lag.kafka import ISOLATIONS
from qctl.lag.model import BackendError, LagSnapshot
from qctl.lag.thresholds import Breach, Thresholds, find_breaches
from qctl.output import Output, table

GROUPS_CAPABILITY = "consumer-groups"
QUEUES_CAPABILITY = "queue-stats"


@click.command()
@click.option(
    "--group", "-g", "groups", multiple=True, metavar="GROUP", help="A consumer group (repeatable)."
)
@click.option(
    "--queue", "-q", "queues", multiple=True, metavar="QUEUE", help="A queue (repeatable)."
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every group and queue (the default without --group/--queue).",
)
@backend_option(multiple=True)
@output_option("table", "json", "yaml", "prometheus")
@click.option(
    "--threshold",
    type=click.IntRange(min=0),
    metavar="N",
    help="Exit 6 when a group's lag or a queue's depth exceeds N messages.",
)
@click.option(
    "--max-time-lag",
    metavar="DURATION",
    help="Exit 6 when a lag in time exceeds DURATION (e.g. 30s, 5m, PT1H).",
)
@click.option(
    "--isolation",
    type=click.Choice(ISOLATIONS),
    default="auto",
    show_default=True,
    help="Measure Kafka lag for read_committed consumers (against the last-stable offset) or "
    "read_uncommitted ones (against the high watermark); auto decides per group.",
)
@click.option(
    "--watch", "-w", is_flag=True, help="Refresh every --interval: the live view on a terminal."
)
@click.option(
    "--interval",
    type=FiniteFloatRange(min=0.5),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes with --watch.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --watch and no terminal: stop after N snapshots.",
)
@timeout_option
@pass_app
def lag(
    app: App,
    groups: tuple[str, ...],
    queues: tuple[str, ...],
    everything: bool,
    backends: tuple[str, ...],
    output: str | None,
    threshold: int | None,
    max_time_lag: str | None,
    isolation: str,
    watch: bool,
    interval: float,
    count: int | None,
    timeout: float,
) -> None:
    """Consumer lag of Kafka groups and RabbitMQ queues, with status, trend and ETA.

    \b
    Kafka, per group and partition: committed, log-end and last-stable offsets, lag in
    messages and in time (the age of the message at the committed offset), partitions
    never committed, data lost to retention, the members owning each partition.
    RabbitMQ, per queue: ready, unacknowledged, consumers, utilisation, publish/deliver/ack
    rates, drain ETA; dead-letter queues are marked.

    \b
    Each group and queue gets a Burrow-style status (OK, WARN, STALL, STOP, ERR, REWIND),
    a trend and an ETA, judged from a window of samples: kept in memory with --watch,
    and in the qctl state directory between one-shot runs. See docs/lag.md.

    \b
    Examples:
      qctl lag                                   all groups and queues
      qctl lag -g orders-service                 one group, with its partitions
      qctl lag -q payments -o json
      qctl lag --threshold 10000 --max-time-lag 5m   exit 6 when exceeded (cron, CI)
      qctl lag -o prometheus > /var/lib/node_exporter/qctl_lag.prom
      qctl lag --watch                           the live view
    """
    if everything and (groups or queues):
        raise UsageError("--all cannot be combined with --group or --queue", "pick one")
    limits = Thresholds(
        messages=threshold,
        time_lag_seconds=_duration_seconds(max_time_lag) if max_time_lag else None,
    )
    if watch and limits.active:
        raise UsageError(
            "--threshold and --max-time-lag are checks of one snapshot",
            "drop --watch, or run the check from cron",
        )
    selection = Selection(groups=groups, queues=queues, everything=everything)
    collector = _collector(app, selection, backends, isolation, timeout)
    if watch:
        if output in (None, "table") and _stdout_is_tty():
            from qctl.tui import run_lag_app

            run_lag_app(collector, interval=interval)
            return
        _plain_watch(app, collector, output, interval, count)
        return
    _one_shot(app, collector, output, limits)


# -- setup ---------------------------------------------------------------------------------
def _duration_seconds(text: str) -> float:
    from qctl.timespec import parse_duration

    return parse_duration(text).total_seconds()


def _stdout_is_tty() -> bool:
    import sys

    return sys.stdout.isatty()


def _collector(
    app: App,
    selection: Selection,
    wanted: tuple[str, ...],
    isolation: str,
    timeout: float,
) -> LagCollector:
    """A collector over the backends that can answer the selection."""
    from qctl.plugins import load_backend

    explicit = bool(wanted)
    names = list(dict.fromkeys(wanted)) or app.backend_names()
    chosen: list[str] = []
    for name in names:
        caps = set(capabilities(load_backend(name)))
        useful = (selection.wants_groups and GROUPS_CAPABILITY in caps) or (
            selection.wants_queues and QUEUES_CAPABILITY in caps
        )
        if useful:
            chosen.append(name)
        elif explicit:
            what = (
                "consumer groups"
                if selection.groups
                else "queues"
                if selection.queues
                else "consumer groups or queue statistics"
            )
            raise UnsupportedCapability(name, what)
    if not chosen:
        raise QctlError(
            f"context {app.context().name!r} configures no backend that can report lag",
            "add kafka or rabbitmq settings with `qctl context set`",
        )
    first: dict[str, Backend] = {name: app.backend(name, timeout) for name in chosen}
    targets = {name: backend.target() for name, backend in first.items()}

    def factory(name: str) -> Callable[[], Backend]:
        def make() -> Backend:
            ready = first.pop(name, None)
            return ready if ready is not None else app.backend(name, timeout)

        return make

    return LagCollector(
        context=app.context().name,
        backends={name: factory(name) for name in chosen},
        targets=targets,
        selection=selection,
        isolation=isolation,
        timeout=timeout,
    )


# -- one snapshot --------------------------------------------------------------------------
def _one_shot(app: App, collector: LagCollector, output: str | None, limits: Thresholds) -> None:
    from qctl.config import state_dir

    path = history_path(state_dir(), collector.context)
    # Between runs only the evaluation window is worth keeping (and loading).
    collector.history = PendingHistory(path, max_samples=collector.rules.window)
    try:
        snap = collector.snapshot()
    finally:
        collector.close()
    if snap.groups or snap.queues:
        try:
            collector.history.save(path, time.time())
        except OSError as exc:
            app.warn(f"could not save the lag history to {path}: {exc.strerror}")
    breaches = find_breaches(snap, limits) if limits.active else []
    _emit(app, snap, output, limits, breaches, _detailed(collector))
    _raise_for_errors(snap.errors)
    if breaches:
        for breach in breaches[1:]:
            click.echo(f"qctl: error: over the threshold: {breach.describe()}", err=True)
        raise ThresholdExceeded(f"over the threshold: {breaches[0].describe()}")


def _emit(
    app: App,
    snap: LagSnapshot,
    output: str | None,
    limits: Thresholds,
    breaches: list[Breach],
    detailed: bool,
) -> None:
    chosen = output or app.output_format or "table"
    out = _output(app, chosen)
    if chosen == "prometheus":
        from qctl.lag.prometheus import render

        text = render(snap).rstrip("\n")
        out.emit(None, lambda _: text)
        return
    # JSON is written straight from the snapshot's dataclasses (see ``LagOutput``); the
    # other formats want plain values.
    data: Any = dict(vars(snap)) if chosen == "json" else plain(snap)
    if limits.active:
        data["thresholds"] = {
            "messages": limits.messages,
            "time_lag_seconds": limits.time_lag_seconds,
            "exceeded": plain(breaches),
        }
    out.emit(data, lambda payload: render_tables(out, payload, detailed))


class LagOutput(Output):
    """``Output`` with a JSON writer that keeps thousands of partitions fast to print
    (see ``qctl.lag.jsonout``)."""

    def emit(self, data: Any, table: Callable[[Any], str] | None = None) -> None:
        if self.fmt == "json":
            self._write(jsonout.dumps(data))
            return
        super().emit(data, table)

    def jsonl(self, row: Any) -> None:
        self.stream.write(json.dumps(plain(row), ensure_ascii=False) + "\n")


def _output(app: App, chosen: str) -> LagOutput:
    base = app.output(chosen)
    return LagOutput(chosen, color=base.color, stream=base.stream)


def _detailed(collector: LagCollector) -> bool:
    """Partition tables when groups were named (``--group``), not for the overview."""
    return bool(collector.selection.groups)


def _raise_for_errors(errors: list[BackendError]) -> None:
    if not errors:
        return
    for err in errors[1:]:
        click.echo(error_line(str(err.error)), err=True)
    code = exit_code_for(errors)
    failure = (
        UnreachableError(errors[0].error)
        if code == ExitCode.UNREACHABLE
        else QctlError(errors[0].error)
    )
    failure.exit_code = ExitCode(code)
    raise failure


# -- plain watch ---------------------------------------------------------------------------
def _plain_watch(
    app: App, collector: LagCollector, output: str | None, interval: float, count: int | None
) -> None:
    """One snapshot per interval, for logs and pipes: tables with a header line, JSON as
    one document per line, YAML as documents separated by ``---``."""
    chosen = output or app.output_format or "table"
    out = _output(app, chosen)
    taken = 0
    last_errors: list[BackendError] = []
    try:
        while True:
            started = time.monotonic()
            snap = collector.snapshot()
            last_errors = snap.errors
            _emit_watch(out, chosen, snap, _detailed(collector))
            for err in snap.errors:
                app.warn(err.error)
            taken += 1
            if count is not None and taken >= count:
                break
            time.sleep(max(interval - (time.monotonic() - started), 0))
    finally:
        collector.close()
    _raise_for_errors(last_errors)


def _emit_watch(out: Output, chosen: str, snap: LagSnapshot, detailed: bool) -> None:
    if chosen == "json":
        out.jsonl(snap)
        out.stream.flush()
        return
    if chosen == "prometheus":
        from qctl.lag.prometheus import render

        text = render(snap).rstrip("\n")
        out.emit(None, lambda _: f"# snapshot {snap.sampled_at}\n{text}")
        return
    if chosen == "yaml":
        out.emit(None, lambda _: "---")
        out.emit(plain(snap))
        return
    header = f"== {snap.sampled_at}  context {snap.context}"
    out.emit(plain(snap), lambda payload: header + "\n" + render_tables(out, payload, detailed))


# -- tables --------------------------------------------------------------------------------
def render_tables(out: Output, payload: dict[str, Any], detailed: bool) -> str:
    """The table view of a snapshot (``payload`` is its JSON form)."""
    blocks: list[str] = []
    groups = payload.get("groups") or []
    queues = payload.get("queues") or []
    if groups:
        blocks.append(_groups_table(out, groups, len({g["backend"] for g in groups}) > 1))
    if detailed:
        blocks.extend(_partitions_table(out, g) for g in groups)
    if queues:
        blocks.append(_queues_table(out, queues))
    text = "\n\n".join(b for b in blocks if b)
    return text or "(no consumer groups or queues)"


def _status(out: Output, evaluation: dict[str, Any]) -> str:
    return out.status(str(evaluation["status"]))


def _groups_table(out: Output, groups: list[dict[str, Any]], many_backends: bool) -> str:
    rows = []
    for g in groups:
        ev = g["evaluation"]
        rows.append(
            {
                "backend": g["backend"],
                "group": g["group"],
                "state": g["state"],
                "members": len(g["members"]),
                "status": _status(out, ev),
                "trend": ev["trend"],
                "lag": fmt.count(g["lag"]),
                "time_lag": fmt.duration(g["time_lag_seconds"], g["time_lag_exact"]),
                "consume": fmt.rate(ev["consume_rate"]),
                "produce": fmt.rate(ev["produce_rate"]),
                "eta": fmt.eta(ev["eta_seconds"], g["lag"]),
                "notes": _group_notes(g),
                "reason": ev["reason"],
            }
        )
    columns = [
        ("group", "GROUP"),
        ("state", "STATE"),
        ("members", "MEMBERS"),
        ("status", "STATUS"),
        ("trend", "TREND"),
        ("lag", "LAG"),
        ("time_lag", "TIME LAG"),
        ("consume", "CONSUME/S"),
        ("produce", "PRODUCE/S"),
        ("eta", "ETA"),
        ("notes", "NOTES"),
        ("reason", "REASON"),
    ]
    if many_backends:
        columns.insert(0, ("backend", "BACKEND"))
    return table(rows, columns)


def _group_notes(g: dict[str, Any]) -> str:
    notes = []
    if g["never_committed"]:
        notes.append(f"{g['never_committed']} never committed ({fmt.count(g['backlog'])} backlog)")
    if g["data_lost"]:
        notes.append(f"data lost: {fmt.count(g['data_lost'])} messages")
    return "; ".join(notes) or "-"


def _partitions_table(out: Output, g: dict[str, Any]) -> str:
    rows = []
    for p in g["partitions"]:
        owner = p["owner"]
        state = p["state"]
        if state == "data-lost":
            state = f"data lost: {fmt.count(p['data_lost'])} messages"
        elif state == "never-committed":
            state = f"never committed ({fmt.count(p['backlog'])} backlog)"
        rows.append(
            {
                "topic": p["topic"],
                "partition": p["partition"],
                "committed": fmt.count(p["committed"]),
                "log_end": fmt.count(p["log_end"]),
                "lso": fmt.count(p["last_stable"]),
                "lag": fmt.count(p["lag"]),
                "time_lag": fmt.duration(p["time_lag_seconds"], p["time_lag_exact"]),
                "state": state,
                "status": _status(out, p["evaluation"]),
                "owner": f"{owner['client_id']}@{owner['host']}" if owner else "-",
            }
        )
    title = f"group {g['group']} ({g['state']}, {g['isolation']}): partitions"
    return (
        title
        + "\n"
        + table(
            rows,
            [
                ("topic", "TOPIC"),
                ("partition", "PARTITION"),
                ("committed", "COMMITTED"),
                ("log_end", "LOG-END"),
                ("lso", "LAST-STABLE"),
                ("lag", "LAG"),
                ("time_lag", "TIME LAG"),
                ("state", "STATE"),
                ("status", "STATUS"),
                ("owner", "OWNER"),
            ],
        )
    )


def _queues_table(out: Output, queues: list[dict[str, Any]]) -> str:
    rows = []
    for q in queues:
        ev = q["evaluation"]
        name = q["queue"] if q["vhost"] == "/" else f"{q['vhost']}/{q['queue']}"
        dlq = "-"
        if q["dead_letter"]:
            dlq = "DLQ" if not q["inflow_rate"] else f"DLQ, +{fmt.rate(q['inflow_rate'])}/s"
        rows.append(
            {
                "queue": name,
                "ready": fmt.count(q["ready"]),
                "unacked": fmt.count(q["unacked"]),
                "consumers": q["consumers"],
                "util": fmt.utilisation(q["consumer_utilisation"]) if q["consumers"] else "-",
                "publish": fmt.rate(q["publish_rate"]),
                "deliver": fmt.rate(q["deliver_rate"]),
                "ack": fmt.rate(q["ack_rate"]),
                "status": _status(out, ev),
                "trend": ev["trend"],
                "eta": fmt.eta(ev["eta_seconds"], q["depth"]),
                "dlq": dlq,
                "reason": ev["reason"],
            }
        )
    return table(
        rows,
        [
            ("queue", "QUEUE"),
            ("ready", "READY"),
            ("unacked", "UNACKED"),
            ("consumers", "CONSUMERS"),
            ("util", "UTIL"),
            ("publish", "PUBLISH/S"),
            ("deliver", "DELIVER/S"),
            ("ack", "ACK/S"),
            ("status", "STATUS"),
            ("trend", "TREND"),
            ("eta", "DRAIN ETA"),
            ("dlq", "DLQ"),
            ("reason", "REASON"),
        ],
    )
