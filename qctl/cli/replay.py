"""``qctl replay SOURCE --to TARGET``: re-publish a window of a topic's or stream's history."""

from __future__ import annotations

from typing import Any

import click

from qctl.cli.app import App, pass_app
from qctl.cli.options import (
    FiniteFloatRange,
    output_option,
    partitioner_option,
    timeout_option,
    yes_option,
)
from qctl.errors import UsageError

EPILOG = """\b
Examples:
  qctl replay kafka:orders --to kafka:orders-rebuild --from 2026-11-27T10:00:00Z --until -1h
  qctl replay kafka:orders/2 --to kafka:orders-debug --from 1200 --until 1300
  qctl replay kafka:orders --to rabbitmq:exchange/orders --routing-key order.replayed \\
      --where 'header.event-type == "OrderCreated"' --rate 500
  qctl replay rabbitmq:queue/events-stream --to kafka:events --from -2h
  qctl replay kafka:orders --to kafka:orders-rebuild --dry-run
  qctl replay --resume replay-20261127-101500-3f2a

\b
Positions (--from, --until; --until is exclusive): earliest | latest | OFFSET | -N
  (N before the end) | ISO-8601 time (UTC unless a zone is given) | -DURATION | now;
  stream queues: first | last | next | OFFSET | time. The window is fixed when the
  job starts, so a resume finishes exactly that window.

\b
Guarantees: Kafka to Kafka is exactly-once (a transaction writes the copies and the
job group's position; read_committed readers of the target see each message once,
also after Ctrl-C or kill -9 and --resume). Other targets: at-least-once (publisher
confirms; the source position advances only past confirmed messages). Every copy
keeps key, value, headers, timestamp and properties and gets a qctl-replayed-from
header with its source position."""


@click.command("replay", epilog=EPILOG)
@click.argument("source", required=False)
@click.option(
    "--to", "to", metavar="TARGET", help="kafka:TOPIC[/P], rabbitmq:exchange/X or rabbitmq:queue/Q."
)
@click.option(
    "--from", "start", metavar="POSITION", help="Where to start (default: earliest/first)."
)
@click.option(
    "--until", "end", metavar="POSITION", help="Where to stop, exclusive (default: the end now)."
)
@click.option("--where", "-w", multiple=True, metavar="EXPR", help="Only messages matching EXPR.")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Replay N messages at most.")
@click.option("--rate", type=FiniteFloatRange(min=0, min_open=True), metavar="PER_SECOND")
@click.option(
    "--routing-key", "-r", help="RabbitMQ exchange targets: the routing key (default: the key)."
)
@click.option(
    "--keep-partition", is_flag=True, help="Kafka targets: the source partition, not the key's."
)
@partitioner_option
@click.option(
    "--dry-run", is_flag=True, help="Counts per partition and the time span; copies nothing."
)
@click.option("--resume", "resume_id", metavar="JOB", help="Continue an interrupted replay.")
@click.option("--list-jobs", is_flag=True, help="List replay jobs and exit.")
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="At-least-once targets: messages in flight (RabbitMQ confirm window).",
)
@timeout_option
@yes_option
@output_option()
@pass_app
def replay(
    app: App,
    source: str | None,
    to: str | None,
    start: str | None,
    end: str | None,
    where: tuple[str, ...],
    limit: int | None,
    rate: float | None,
    routing_key: str | None,
    keep_partition: bool,
    partitioner: str | None,
    dry_run: bool,
    resume_id: str | None,
    list_jobs: bool,
    window: int,
    timeout: float,
    yes: bool,
    output: str | None,
) -> None:
    """Re-publish the messages of SOURCE (a Kafka topic or partition, or a RabbitMQ stream
    queue) between --from and --until to TARGET.
    """
    from qctl.cli.dlq import backend_cache, job_view, render_jobs, resume_job
    from qctl.jobs.store import JobStore

    if list_jobs:
        store = JobStore()
        rows = [job_view(store, j) for j in store.jobs(("replay",))]
        app.output(output).emit(rows, render_jobs)
        return
    if resume_id:
        _run(app, resume_job(app, resume_id, "replay"), timeout, output)
        return
    if not source or not to:
        raise UsageError(
            "replay needs SOURCE and --to TARGET",
            "e.g. qctl replay kafka:orders --to kafka:orders-copy",
        )
    from qctl.cli.consume import parse_position
    from qctl.filters import compile_where
    from qctl.refs import parse_ref
    from qctl.replay.engine import ReplayOptions, guarantee_of, prepare, validate

    src = parse_ref(source)
    dst = parse_ref(to)
    app.check_backend(src.backend)
    app.check_backend(dst.backend)
    compile_where(list(where))
    opts = ReplayOptions(
        source=str(src),
        to=str(dst),
        where=list(where),
        limit=limit,
        rate=rate,
        routing_key=routing_key,
        keep_partition=keep_partition,
        partitioner=partitioner,
        window=window,
    )
    validate(src, dst, opts)
    from_pos = parse_position(start, "--from") if start else None
    until_pos = parse_position(end, "--until") if end else None
    backend_for = backend_cache(app, timeout)
    opts, warnings = prepare(opts, from_pos, until_pos, backend_for)
    for warning in warnings:
        app.warn(warning)
    if dry_run:
        _dry_run(app, opts, backend_for, output)
        return
    app.confirm_mutation(f"replay {src} into {dst}", yes)
    options = opts.to_json()
    options["context"] = app.context().name
    job = JobStore().create("replay", str(src), str(dst), options, guarantee_of(opts, backend_for))
    if opts.kafka_window is not None:
        from qctl.replay.window import KafkaWindow

        total = KafkaWindow.from_json(opts.kafka_window).total
        app.info(f"replaying up to {total:,} message(s) from {src} into {dst}")
    _run(app, job, timeout, output)


def _dry_run(app: App, opts: Any, backend_for: Any, output: str | None) -> None:
    from qctl.output import table
    from qctl.replay.engine import dry_run

    plans = dry_run(opts, backend_for)
    rows = [vars(p) for p in plans]
    total = sum(p.messages for p in plans)

    def render(data: list[dict[str, Any]]) -> str:
        return table(
            data,
            [
                ("partition", "PARTITION"),
                ("start", "FROM"),
                ("end", "UNTIL"),
                ("messages", "MESSAGES"),
                ("first", "FIRST"),
                ("last", "LAST"),
            ],
            empty="(nothing to replay)",
        )

    app.output(output).emit(rows, render)
    app.info(f"dry run: {total:,} message(s) would be replayed into {opts.to}; nothing was sent")


def _run(app: App, job: Any, timeout: float, output: str | None) -> None:
    from qctl.cli.dlq import backend_cache, job_view, resume_command
    from qctl.jobs.runner import run_job
    from qctl.jobs.store import JobStore
    from qctl.replay.engine import run_replay

    store = JobStore()
    backend_for = backend_cache(app, timeout)
    finished, error = run_job(
        store,
        job,
        lambda run: run_replay(job, backend_for, run, timeout),
        resume_command=resume_command(job),
        info=app.info,
        warn=app.warn,
        source_key=None,  # replays of one source do not interfere: each has its own group
    )
    if output in ("json", "yaml"):
        app.output(output).emit(job_view(store, finished))
    if error is not None:
        raise error
