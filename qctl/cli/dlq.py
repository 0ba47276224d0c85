"""``qctl dlq``: list, inspect, peek, drain, redrive and purge dead-letter queues.

Thin commands over ``qctl.dlq`` (what is a DLQ, provenance, routing) and ``qctl.jobs``
(the job model and the two movers). Every command that moves messages runs as a job
with an id, progress on a terminal, a ledger, clean Ctrl-C and ``--resume``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from qctl.cli import error_line
from qctl.cli.app import App, pass_app, stdin_is_tty
from qctl.cli.options import (
    FiniteFloatRange,
    backend_option,
    output_option,
    partitioner_option,
    timeout_option,
    yes_option,
)
from qctl.errors import QctlError, UsageError

if TYPE_CHECKING:
    from qctl.backends.base import Backend
    from qctl.jobs.model import Job

EPILOG = """\b
DLQs: kafka:TOPIC (what comes after the consumer group qctl.dlq.<TOPIC>: redrive,
drain and purge advance that group, other consumers are never touched) or
rabbitmq:queue/NAME (what is in the queue). See docs/dlq.md."""


@click.group(epilog=EPILOG)
def dlq() -> None:
    """Dead-letter queues: what is in them, why, and moving them back without loss."""


def backend_cache(app: App, timeout: float) -> Any:
    cache: dict[str, Backend] = {}

    def get(name: str) -> Backend:
        if name not in cache:
            cache[name] = app.backend(name, timeout)
        return cache[name]

    return get


def _age(millis: int | None, now: float) -> str | None:
    from qctl.timespec import format_duration

    if millis is None:
        return None
    return format_duration(max(now - millis / 1000, 0))


def _iso(millis: int | None) -> str | None:
    from qctl.timespec import from_millis

    if millis is None:
        return None
    return from_millis(millis).isoformat().replace("+00:00", "Z")


# -- list -------------------------------------------------------------------------------------
@dlq.command("list")
@backend_option(multiple=True)
@timeout_option
@output_option()
@pass_app
def list_(app: App, backends: tuple[str, ...], timeout: float, output: str | None) -> None:
    """The context's DLQs with message counts, oldest/newest age and inflow rate.

    Kafka: topics named like DLQs (*.dlq, *-dlq, *.DLT, *-dlt, the context's
    dlq_patterns) or declared with dlq: in an applied topology file; counts are what
    comes after the group qctl.dlq.<topic>. RabbitMQ: queues another queue or a policy
    dead-letters into, declared ones, and ones named like DLQs; WHY names every queue
    whose dead letters reach it (or may: -o json says why). An age that cannot be known
    is '-' with a footnote.
    """
    from qctl.backends.base import require
    from qctl.backends.capabilities.deadletters import SupportsDeadLetters
    from qctl.backends.capabilities.topology import SupportsTopology
    from qctl.output import table
    from qctl.topology.ownership import declared_dlqs

    names = list(backends) or app.backend_names()
    rows: list[dict[str, Any]] = []
    failures: list[QctlError] = []
    now = time.time()
    for name in names:
        try:
            backend = app.backend(name, timeout)
            dead = require(backend, SupportsDeadLetters, "dead-letter queues")
            declared: dict[str, str] = {}
            if isinstance(backend, SupportsTopology):
                try:
                    declared = {d.name: d.source for d in declared_dlqs(backend)}
                except QctlError as exc:
                    app.warn(f"{name}: cannot read the topology owner records: {exc.what}")
            for q in dead.dead_letter_queues(declared):
                rows.append(
                    {
                        "dlq": q.ref,
                        "backend": q.backend,
                        "name": q.name,
                        "messages": q.messages,
                        "oldest": _iso(q.oldest),
                        "newest": _iso(q.newest),
                        "newest_unknown": q.newest_unknown,
                        "oldest_age_seconds": (
                            round(now - q.oldest / 1000, 3) if q.oldest is not None else None
                        ),
                        "inflow_rate": q.inflow_rate,
                        "why": q.why,
                        "group": q.group,
                        "source": q.source,
                        "sources": q.sources,
                        "type": q.type,
                        "partitions": q.partitions,
                    }
                )
        except QctlError as exc:
            failures.append(exc)

    def render(data: list[dict[str, Any]]) -> str:
        notes: list[str] = []  # footnote i is marked with i+1 stars
        view = [
            {
                **r,
                "oldest_age": _age(_millis(r["oldest"]), now),
                "newest_age": _age(_millis(r["newest"]), now)
                or _footnote(notes, r["newest_unknown"]),
                "inflow": None if r["inflow_rate"] is None else f"{r['inflow_rate']:g}/s",
            }
            for r in data
        ]
        body = table(
            view,
            [
                ("dlq", "DLQ"),
                ("messages", "MESSAGES"),
                ("oldest_age", "OLDEST"),
                ("newest_age", "NEWEST"),
                ("inflow", "INFLOW"),
                ("why", "WHY"),
            ],
            empty="(no dead-letter queues)",
        )
        legend = [f"{'*' * (i + 1)} newest unknown: {note}" for i, note in enumerate(notes)]
        return "\n".join([body, *([""] if legend else []), *legend])

    app.output(output).emit(rows, render)
    if failures:
        for err in failures[1:]:
            click.echo(error_line(str(err)), err=True)
        raise failures[0]


def _footnote(notes: list[str], note: str | None) -> str | None:
    """``-`` marked with the footnote that says why a value is unknown (stars: the
    first note one, the second two, ...); None when there is nothing to say."""
    if note is None:
        return None
    if note not in notes:
        notes.append(note)
    return "-" + "*" * (notes.index(note) + 1)


def _millis(iso: str | None) -> int | None:
    import datetime as dt

    if iso is None:
        return None
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# -- inspect ----------------------------------------------------------------------------------
@dlq.command("inspect")
@click.argument("dlq_ref", metavar="DLQ")
@click.option("--where", "-w", multiple=True, metavar="EXPR", help="Only messages matching EXPR.")
@click.option("--max", "max_messages", type=click.IntRange(min=1), help="Look at N at most.")
@timeout_option
@output_option()
@pass_app
def inspect(
    app: App,
    dlq_ref: str,
    where: tuple[str, ...],
    max_messages: int | None,
    timeout: float,
    output: str | None,
) -> None:
    """What is in DLQ and why: counts by origin, failure and age, without moving anything.

    Reads like `dlq peek` (RabbitMQ: get and requeue; Kafka: from the qctl group's
    position, committing nothing).
    """
    from qctl.dlq.access import Dlq, read_messages
    from qctl.dlq.inspect import histogram
    from qctl.filters import compile_where
    from qctl.output import key_value_table

    predicate = compile_where(list(where))
    queue = Dlq(dlq_ref, backend_cache(app, timeout))
    session = queue.peek_session()
    try:
        for warning in session.warnings:
            app.warn(warning)
        messages = read_messages(session, None)
        if predicate is not None:
            messages = (m for m in messages if predicate(m))
        if max_messages is not None:
            import itertools

            messages = itertools.islice(messages, max_messages)
        result = histogram(queue.name, messages, queue.ref.backend, max_messages)
    finally:
        session.close()

    def render(data: dict[str, Any]) -> str:
        parts = [
            key_value_table(
                [
                    ("DLQ", data["dlq"]),
                    ("messages", f"{data['total']}{' (first --max)' if data['truncated'] else ''}"),
                    ("oldest", data["oldest"]),
                    ("newest", data["newest"]),
                ]
            )
        ]
        for key, title in (
            ("by_origin", "ORIGIN"),
            ("by_failure", "FAILURE"),
            ("by_age", "AGE"),
            ("by_redrives", "REDRIVES"),
            ("by_convention", "CONVENTION"),
        ):
            if data[key]:
                parts.append(_counts_table(title, data[key], data["total"]))
        return "\n\n".join(parts)

    app.output(output).emit(result, render)


def _counts_table(title: str, counts: dict[str, int], total: int) -> str:
    from tabulate import tabulate

    rows = [[k, v, f"{100 * v / total:.1f}%" if total else "-"] for k, v in counts.items()]
    return tabulate(rows, headers=[title, "COUNT", "SHARE"], tablefmt="plain")


# -- peek -------------------------------------------------------------------------------------
@dlq.command("peek")
@click.argument("dlq_ref", metavar="DLQ")
@click.option(
    "--max", "-n", "max_messages", type=click.IntRange(min=1), default=10, show_default=True
)
@click.option("--where", "-w", multiple=True, metavar="EXPR", help="Only messages matching EXPR.")
@timeout_option
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(["table", "jsonl", "json", "yaml"]),
    help="table (default on a terminal), jsonl (archive lines plus a provenance object), "
    "json or yaml.",
)
@pass_app
def peek(
    app: App,
    dlq_ref: str,
    max_messages: int,
    where: tuple[str, ...],
    timeout: float,
    output: str | None,
) -> None:
    """Show messages of DLQ with their decoded provenance; nothing is removed.

    RabbitMQ: get and requeue in order, with the x-death timeline. On quorum queues
    before RabbitMQ 4.3 every requeue counts as a delivery attempt; qctl warns then.
    Kafka: from the qctl group's position, committing nothing.
    """
    from qctl.dlq.access import Dlq, read_messages
    from qctl.dlq.inspect import peek_row, table_row
    from qctl.filters import compile_where
    from qctl.messages import make_stdout_private
    from qctl.output import table

    predicate = compile_where(list(where))
    fmt = output or app.output_format or ("table" if sys.stdout.isatty() else "jsonl")
    make_stdout_private()  # message data: `> f` gets mode 0600 like an archive
    queue = Dlq(dlq_ref, backend_cache(app, timeout))
    session = queue.peek_session()
    rows: list[dict[str, Any]] = []
    try:
        for warning in session.warnings:
            app.warn(warning)
        for message in read_messages(session, None):
            if predicate is not None and not predicate(message):
                continue
            rows.append(peek_row(len(rows) + 1, message, queue.ref.backend))
            if len(rows) >= max_messages:
                break
    finally:
        session.close()

    def render(data: list[dict[str, Any]]) -> str:
        view = [table_row(r) for r in data]
        columns = [
            ("n", "#"),
            ("position", "POSITION"),
            ("age", "AGE"),
            ("origin", "ORIGIN"),
            ("failure", "FAILURE"),
            ("redrives", "REDRIVES"),
        ]
        if any(v.get("deaths") for v in view):
            columns.append(("deaths", "DEATHS (OLDEST FIRST)"))
        else:
            columns.append(("message", "ERROR"))
        columns += [("key", "KEY"), ("value", "VALUE")]
        return table(view, columns, empty="(empty)")

    app.output(fmt).emit(rows, render)


# -- jobs -------------------------------------------------------------------------------------
@dlq.command("jobs")
@click.argument("job_id", required=False, metavar="[JOB]")
@click.option("--all", "all_kinds", is_flag=True, help="Also replay jobs.")
@click.option(
    "--failures",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="With JOB: how many failed messages of its ledger to show.",
)
@output_option()
@pass_app
def jobs(app: App, job_id: str | None, all_kinds: bool, failures: int, output: str | None) -> None:
    """List DLQ jobs with their state and counts, or show one JOB with its ledger."""
    from qctl.jobs.store import JobStore

    store = JobStore()
    if job_id:
        job = store.load(job_id)
        ledger = store.read_ledger(job)
        data = job_view(store, job)
        data["failures"] = [e for e in ledger if e.get("event") == "failed"][:failures]
        data["runs_log"] = [
            {k: e.get(k) for k in ("at", "event", "error", "state")}
            for e in ledger
            if e.get("event") not in ("progress", "failed")
        ]
        app.output(output).emit(data, _render_job)
        return
    kinds = None if all_kinds else ("redrive", "drain", "purge")
    rows = [job_view(store, j) for j in store.jobs(kinds)]
    app.output(output).emit(rows, render_jobs)


def job_view(store: Any, job: Job) -> dict[str, Any]:
    data = job.to_json()
    data["state"] = store.display_state(job)
    data["resume"] = (
        f"{resume_command(job)}" if data["state"] not in ("completed", "running") else None
    )
    return data


def resume_command(job: Job) -> str:
    if job.kind == "replay":
        return f"qctl replay --resume {job.id}"
    return f"qctl dlq {job.kind} --resume {job.id}"


def render_jobs(rows: list[dict[str, Any]]) -> str:
    from qctl.output import table

    view = [
        {
            "id": r["id"],
            "kind": r["kind"],
            "state": r["state"],
            "source": r["source"],
            "target": r["target"],
            **{k: r["counters"][k] for k in ("moved", "failed", "parked", "kept", "remaining")},
            "updated": r["updated"],
        }
        for r in rows
    ]
    return table(
        view,
        [
            ("id", "JOB"),
            ("kind", "KIND"),
            ("state", "STATE"),
            ("source", "SOURCE"),
            ("target", "TARGET"),
            ("moved", "MOVED"),
            ("failed", "FAILED"),
            ("parked", "PARKED"),
            ("kept", "KEPT"),
            ("remaining", "REMAINING"),
            ("updated", "UPDATED"),
        ],
        empty="(no jobs)",
    )


def _render_job(data: dict[str, Any]) -> str:
    from qctl.output import key_value_table, table

    c = data["counters"]
    head = key_value_table(
        [
            ("job", data["id"]),
            ("kind", data["kind"]),
            ("state", data["state"]),
            ("guarantee", data["guarantee"]),
            ("source", data["source"]),
            ("target", data["target"]),
            ("moved", c["moved"]),
            ("parked", c["parked"]),
            ("kept", c["kept"]),
            ("skipped", c["skipped"]),
            ("failed", c["failed"]),
            ("remaining", c["remaining"]),
            ("runs", data["runs"]),
            ("created", data["created"]),
            ("updated", data["updated"]),
            ("error", data["error"]),
            ("resume", data["resume"]),
        ]
    )
    parts = [head]
    if data["failures"]:
        parts.append(
            table(data["failures"], [("at", "AT"), ("source", "MESSAGE"), ("reason", "REASON")])
        )
    return "\n\n".join(parts)


# -- moving commands --------------------------------------------------------------------------
def _confirm(app: App, what: str, yes: bool) -> None:
    """Moving dead letters needs --yes, or a yes on a terminal; protected contexts ask
    for their name."""
    app.confirm_mutation(what, yes)
    if yes:
        return
    if not stdin_is_tty():
        raise UsageError(f"refusing to {what} without --yes", "add --yes (or run in a terminal)")
    if not click.confirm(f"About to {what}. Continue?", err=True, default=False):
        raise QctlError("nothing was changed")


def resume_job(app: App, job_id: str, kind: str) -> Job:
    from qctl.jobs.store import JobStore

    store = JobStore()
    job = store.load(job_id)
    if job.kind != kind:
        raise UsageError(
            f"job {job.id} is a {job.kind} job", f"resume it with `{resume_command(job)}`"
        )
    state = store.display_state(job)
    if state == "completed":
        raise UsageError(f"job {job.id} is already completed", "start a new job instead")
    context = job.options.get("context")
    if context and context != app.context().name:
        raise UsageError(
            f"job {job.id} was started in context {context!r}, not {app.context().name!r}",
            f"resume it with `qctl -C {context} {resume_command(job).removeprefix('qctl ')}`",
        )
    return job


def _run(app: App, job: Job, timeout: float, output: str | None) -> None:
    from qctl.dlq.jobs import run_dlq_job
    from qctl.jobs.runner import run_job
    from qctl.jobs.store import JobStore

    store = JobStore()
    backend_for = backend_cache(app, timeout)
    finished, error = run_job(
        store,
        job,
        lambda run: run_dlq_job(job, backend_for, run, timeout),
        resume_command=resume_command(job),
        info=app.info,
        warn=app.warn,
        source_key=job.source,
    )
    if output in ("json", "yaml"):
        app.output(output).emit(job_view(store, finished))
    if error is not None:
        raise error


def _common_job_options(f: Any) -> Any:
    f = click.option(
        "--resume",
        "resume_id",
        metavar="JOB",
        help="Continue an interrupted or failed job (its own options apply).",
    )(f)
    return click.option(
        "--window",
        type=click.IntRange(min=1),
        default=1000,
        show_default=True,
        help="Messages read but not yet acknowledged at most (also the RabbitMQ confirm "
        "window): after a crash at most this many are written twice.",
    )(f)


def _new_job(app: App, kind: str, opts: Any, target: str | None, timeout: float) -> Job:
    from qctl.dlq.access import Dlq
    from qctl.dlq.jobs import guarantee, new_job_options
    from qctl.jobs.store import JobStore

    queue = Dlq(opts.dlq, backend_cache(app, timeout))
    opts = new_job_options(queue, opts)
    options = opts.to_json()
    options["context"] = app.context().name
    return JobStore().create(kind, str(queue.ref), target, options, guarantee(queue, opts, kind))


@dlq.command("redrive")
@click.argument("dlq_ref", metavar="DLQ", required=False)
@click.option("--to", "to", metavar="TARGET", help="Send every message here instead of its origin.")
@click.option("--routing-key", "-r", help="With --to rabbitmq:exchange/X: the routing key.")
@click.option(
    "--from-file",
    type=click.Path(dir_okay=False, exists=True),
    help="Redrive messages of an archive (from `dlq drain`) instead of the DLQ itself.",
)
@click.option("--where", "-w", multiple=True, metavar="EXPR", help="Only messages matching EXPR.")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Redrive N messages at most.")
@click.option("--rate", type=FiniteFloatRange(min=0, min_open=True), metavar="PER_SECOND")
@click.option(
    "--max-redrives",
    type=click.IntRange(min=0),
    metavar="N",
    help="Messages already redriven N times go to the parking lot <DLQ>.parking.",
)
@click.option(
    "--keep-partition",
    is_flag=True,
    help="Kafka, with --to: the original partition, not the key's (without --to, the "
    "original partition is the default).",
)
@click.option(
    "--by-key",
    is_flag=True,
    help="Kafka: place every record by its key (--partitioner), even where its original "
    "partition is known (e.g. after partitions were added to the origin).",
)
@partitioner_option
@click.option(
    "--to-origin-queue",
    is_flag=True,
    help="RabbitMQ: publish to the queue the message died in (default exchange) rather than "
    "to its original exchange, which may reach other queues too.",
)
@click.option(
    "--strip-death-headers",
    is_flag=True,
    help="Remove x-death/x-delivery-count (provenance is kept in qctl-original-* headers).",
)
@click.option("--dry-run", is_flag=True, help="Print the routes and counts; move nothing.")
@_common_job_options
@timeout_option
@yes_option
@output_option()
@pass_app
def redrive(
    app: App,
    dlq_ref: str | None,
    to: str | None,
    routing_key: str | None,
    from_file: str | None,
    where: tuple[str, ...],
    limit: int | None,
    rate: float | None,
    max_redrives: int | None,
    keep_partition: bool,
    by_key: bool,
    partitioner: str | None,
    to_origin_queue: bool,
    strip_death_headers: bool,
    dry_run: bool,
    resume_id: str | None,
    window: int,
    timeout: float,
    yes: bool,
    output: str | None,
) -> None:
    """Send the messages of DLQ back to where they came from (or --to TARGET).

    Kafka to Kafka is exactly-once (a transaction writes the messages and advances the
    DLQ group); everything else is at-least-once with zero loss (a message leaves the
    DLQ only after its copy was confirmed). A message that cannot be delivered
    (unroutable, target missing, origin unknown) stays in the DLQ and is reported
    (exit 4). Ctrl-C stops cleanly (exit 130); `--resume JOB` continues.
    """
    from qctl.dlq.jobs import DlqJobOptions
    from qctl.filters import compile_where
    from qctl.refs import parse_ref

    if resume_id:
        job = resume_job(app, resume_id, "redrive")
        _run(app, job, timeout, output)
        return
    if not dlq_ref:
        raise UsageError("missing DLQ", "e.g. qctl dlq redrive kafka:orders.dlq")
    compile_where(list(where))  # a syntax error is a usage error before anything starts
    if to is not None:
        target = parse_ref(to)
        app.check_backend(target.backend)
        if routing_key is not None and target.kind != "exchange":
            raise UsageError("--routing-key applies to --to rabbitmq:exchange/NAME")
    elif routing_key is not None:
        raise UsageError("--routing-key needs --to rabbitmq:exchange/NAME")
    opts = DlqJobOptions(
        dlq=dlq_ref,
        to=to,
        routing_key=routing_key,
        from_file=from_file,
        where=list(where),
        limit=limit,
        rate=rate,
        max_redrives=max_redrives,
        keep_partition=keep_partition,
        by_key=by_key,
        partitioner=partitioner,
        to_origin_queue=to_origin_queue,
        strip_death_headers=strip_death_headers,
        window=window,
    )
    if dry_run:
        _dry_run(app, opts, timeout, output)
        return
    what = f"redrive messages of {dlq_ref} to {to or 'their origin'}"
    if from_file:
        what = f"redrive the messages of {from_file} to {to or 'their origin'}"
    _confirm(app, what, yes)
    job = _new_job(app, "redrive", opts, to or "(origin)", timeout)
    _run(app, job, timeout, output)


def _dry_run(app: App, opts: Any, timeout: float, output: str | None) -> None:
    from qctl.dlq.access import Dlq
    from qctl.dlq.jobs import dry_run
    from qctl.output import table

    queue = Dlq(opts.dlq, backend_cache(app, timeout))
    groups = dry_run(queue, opts)
    rows = [vars(g) for g in groups]
    total = sum(g.count for g in groups)

    def render(data: list[dict[str, Any]]) -> str:
        return table(
            data,
            [("origin", "ORIGIN"), ("target", "TARGET"), ("action", "ACTION"), ("count", "COUNT")],
            empty="(the DLQ is empty)",
        )

    app.output(output).emit(rows, render)
    app.info(f"dry run: {total} message(s) looked at; nothing was moved")


@dlq.command("drain")
@click.argument("dlq_ref", metavar="DLQ", required=False)
@click.option(
    "--to-file",
    "to_file",
    type=click.Path(dir_okay=False),
    help="The archive file (JSONL, created with mode 0600).",
)
@click.option("--append", is_flag=True, help="Add to an existing archive file.")
@click.option("--where", "-w", multiple=True, metavar="EXPR", help="Only messages matching EXPR.")
@click.option("--older-than", metavar="DURATION", help="Only messages dead-lettered before that.")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Drain N messages at most.")
@_common_job_options
@timeout_option
@yes_option
@output_option()
@pass_app
def drain(
    app: App,
    dlq_ref: str | None,
    to_file: str | None,
    append: bool,
    where: tuple[str, ...],
    older_than: str | None,
    limit: int | None,
    resume_id: str | None,
    window: int,
    timeout: float,
    yes: bool,
    output: str | None,
) -> None:
    """Move messages of DLQ into an archive file (qctl's JSONL format).

    Each message leaves the DLQ only after the file was flushed and fsynced. Redrive
    them later with `qctl dlq redrive DLQ --from-file F`.
    """
    from qctl.dlq.jobs import DlqJobOptions, check_to_file
    from qctl.filters import compile_where

    if resume_id:
        _run(app, resume_job(app, resume_id, "drain"), timeout, output)
        return
    if not dlq_ref or not to_file:
        raise UsageError(
            "drain needs DLQ and --to-file", "e.g. qctl dlq drain kafka:x.dlq --to-file x.jsonl"
        )
    compile_where(list(where))
    _check_duration(older_than)
    check_to_file(to_file, append)
    opts = DlqJobOptions(
        dlq=dlq_ref,
        to_file=to_file,
        append=append,
        where=list(where),
        older_than=older_than,
        limit=limit,
        window=window,
    )
    _confirm(app, f"move messages of {dlq_ref} into {to_file}", yes)
    job = _new_job(app, "drain", opts, to_file, timeout)
    _run(app, job, timeout, output)


def _check_duration(text: str | None) -> None:
    if text is not None:
        from qctl.timespec import parse_duration

        parse_duration(text)


@dlq.command("purge")
@click.argument("dlq_ref", metavar="DLQ", required=False)
@click.option("--older-than", metavar="DURATION", help="Only messages dead-lettered before that.")
@click.option("--where", "-w", multiple=True, metavar="EXPR", help="Only messages matching EXPR.")
@click.option(
    "--archive",
    type=click.Path(dir_okay=False),
    help="Write the purged messages to this archive file first (fsynced before deleting).",
)
@click.option(
    "--delete-records",
    is_flag=True,
    help="Kafka: also delete the records before the group's new position (affects every "
    "reader of the topic).",
)
@_common_job_options
@timeout_option
@yes_option
@output_option()
@pass_app
def purge(
    app: App,
    dlq_ref: str | None,
    older_than: str | None,
    where: tuple[str, ...],
    archive: str | None,
    delete_records: bool,
    resume_id: str | None,
    window: int,
    timeout: float,
    yes: bool,
    output: str | None,
) -> None:
    """Delete the (selected) messages of DLQ; --archive F.jsonl keeps a copy first.

    RabbitMQ: the messages are deleted. Kafka: the group qctl.dlq.<topic> is moved past
    them (with --delete-records the records are deleted too). Needs --yes.
    """
    from qctl.dlq.access import Dlq
    from qctl.dlq.jobs import DlqJobOptions, advance_group, check_to_file, purge_positions
    from qctl.filters import compile_where

    if resume_id:
        _run(app, resume_job(app, resume_id, "purge"), timeout, output)
        return
    if not dlq_ref:
        raise UsageError("missing DLQ", "e.g. qctl dlq purge rabbitmq:queue/x.dlq --yes")
    compile_where(list(where))
    _check_duration(older_than)
    if archive:
        check_to_file(archive, append=False)
    if not yes:
        hint = "add --yes to delete" + ("" if archive else "; --archive F.jsonl keeps a copy first")
        raise UsageError(f"purging {dlq_ref} deletes dead letters for good", hint)
    app.confirm_mutation(f"purge {dlq_ref}", yes)
    queue = Dlq(dlq_ref, backend_cache(app, timeout))
    if delete_records and not queue.log:
        raise UsageError("--delete-records applies to Kafka DLQs")
    if not where and not archive and not (older_than and not queue.log):
        # Fast paths: nothing needs reading.
        if queue.log:
            cut = purge_positions(queue, older_than)
            target = cut.end
            advance_group(queue, target)
            removed = 0
            if delete_records:
                removed = queue.dead_letters.purge_dead_letters(queue.ref, target)
            data = {
                "dlq": str(queue.ref),
                "purged": sum(target[p] - cut.start.get(p, target[p]) for p in target),
                "group": queue.group,
                "positions": {str(p): o for p, o in target.items()},
                "records_deleted": removed,
            }
        else:
            purged = queue.dead_letters.purge_dead_letters(queue.ref)
            data = {"dlq": str(queue.ref), "purged": purged}
        app.output(output).emit(data)
        app.info(f"purged {data['purged']} message(s) from {queue.ref}")
        return
    opts = DlqJobOptions(
        dlq=dlq_ref, to_file=archive, where=list(where), older_than=older_than, window=window
    )
    if queue.log and older_than:
        # Older than D is a prefix of each partition: the job stops at the cutoff.
        cutoff = purge_positions(queue, older_than)
        opts.end_offsets = {str(p): o for p, o in cutoff.end.items()}
    job = _new_job(app, "purge", opts, archive or "(deleted)", timeout)
    try:
        _run(app, job, timeout, output)
    finally:
        if delete_records and queue.log:
            queue.dead_letters.purge_dead_letters(queue.ref, queue.window().start)
