"""``qctl orders``: run the order pipeline, verify it, heal it.

Registered under the ``qctl.commands`` entry point of this distribution, like any
third-party plugin. Only click and qctl's light modules are imported here; the
pipeline (and with it the client libraries) loads when a command runs, so
``qctl --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from qctl.cli.app import App, pass_app
from qctl.cli.options import FiniteFloatRange, backend_option, output_option, timeout_option
from qctl.errors import Interrupted, QctlError, UsageError

if TYPE_CHECKING:
    from qctl_orders.runs import RunBook
    from qctl_orders.wiring import Wiring

SERVICE_NAMES = ("payment", "inventory", "notification", "analytics")


def _wiring(backend: str | None, namespace: str | None) -> Wiring:
    from qctl_orders.wiring import BACKENDS, Wiring, check_namespace

    name = backend or "kafka"
    if name not in BACKENDS:
        raise UsageError(
            f"the order pipeline runs on kafka or rabbitmq, not {name!r}",
            "use --backend kafka or --backend rabbitmq",
        )
    return Wiring(name, check_namespace(namespace))


def _runbook(app: App, wiring: Wiring) -> RunBook:
    from qctl_orders.runs import RunBook

    return RunBook(app.context().name, wiring)


def _duration(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    from qctl.timespec import parse_duration

    try:
        seconds = parse_duration(text).total_seconds()
    except QctlError:
        raise UsageError(
            f"{option} {text!r} is not a duration", "e.g. 30s, 2m, 1h or 0.5s"
        ) from None
    if seconds <= 0:
        raise UsageError(f"{option} must be positive")
    return seconds


def _specs(values: tuple[str, ...], option: str, what: str) -> dict[str, int]:
    """``SERVICE:NUMBER`` options (``--slow payment:20``, ``--crash payment:500``)."""
    out: dict[str, int] = {}
    for value in values:
        service, sep, number = value.partition(":")
        if not sep or service not in SERVICE_NAMES or not number.strip().isdigit():
            raise UsageError(
                f"{option} {value!r} is not SERVICE:{what}",
                f"SERVICE is one of {', '.join(SERVICE_NAMES)}; e.g. {option} payment:"
                + ("500" if what == "AFTER_N" else "5"),
            )
        out[service] = int(number)
    return out


namespace_option = click.option(
    "--namespace",
    "-n",
    envvar="QCTL_ORDERS_NAMESPACE",
    metavar="NS",
    help="Run on the topology prefixed with NS. (see `qctl orders topology`); "
    "default: the example's own names.",
)
run_option = click.option(
    "--run", "run_id", metavar="RUN", help="A recorded run; default: the latest."
)


@click.group()
def orders() -> None:
    """The order pipeline, running: five services on the example topology.

    Order, payment, inventory, notification and analytics services exchange events on
    Kafka or RabbitMQ (examples/order-pipeline.yaml, applied with `qctl topology apply`),
    with payment failures, out-of-stock refunds, poison messages that are retried and
    dead-lettered, simulated crashes, slow consumers and back-pressure: something real
    to watch with `qctl lag` and to repair with `qctl dlq`. See docs/order-pipeline.md.

    \b
      qctl orders run --duration 30s --slow analytics:5
      qctl orders verify
      qctl orders heal && qctl dlq redrive kafka:orders.dlq --yes && qctl orders run --resume
    """


@orders.command("run")
@backend_option()
@namespace_option
@click.option(
    "--rate",
    type=FiniteFloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Orders per second (0: as fast as the pipeline takes them).",
)
@click.option("--duration", metavar="D", help="Create orders for this long (30s, 2m).")
@click.option(
    "--orders",
    "count",
    type=click.IntRange(min=1),
    metavar="N",
    help="Create N orders (default 1000 when --duration is not given).",
)
@click.option(
    "--payment-failure",
    type=FiniteFloatRange(0, 1),
    default=0.05,
    show_default=True,
    metavar="P",
    help="Share of orders paid with a card that is declined.",
)
@click.option(
    "--out-of-stock",
    type=FiniteFloatRange(0, 1),
    default=0.02,
    show_default=True,
    metavar="P",
    help="Share of orders with a sold-out item (refunded after payment).",
)
@click.option(
    "--poison",
    type=FiniteFloatRange(0, 1),
    default=0.01,
    show_default=True,
    metavar="P",
    help="Share of poison orders the payment service cannot read.",
)
@click.option(
    "--slow",
    multiple=True,
    metavar="SERVICE:MS",
    help="Add MS milliseconds of work per message to SERVICE (repeatable).",
)
@click.option(
    "--crash",
    multiple=True,
    metavar="SERVICE:AFTER_N",
    help="Kill SERVICE's consumer after N messages, without committing its "
    "batch, and restart it (repeatable).",
)
@click.option("--seed", type=int, help="Make the orders (and their faults) reproducible.")
@click.option(
    "--max-lag",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    metavar="N",
    help="Throttle new orders while the payment backlog exceeds N.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Attempts of a failing payment before it is dead-lettered.",
)
@click.option(
    "--retry-backoff",
    default="0.5s",
    show_default=True,
    metavar="D",
    help="Wait before the first retry; doubled for each further one.",
)
@click.option(
    "--stock",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    help="Units in stock of each regular item.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Start only the services (no new orders) and stop when they are idle: "
    "processes redriven dead letters after `qctl orders heal`.",
)
@click.option(
    "--idle",
    default="3s",
    show_default=True,
    metavar="D",
    help="With --resume: stop after the services were idle this long.",
)
@click.option(
    "--max-wait",
    default="5m",
    show_default=True,
    metavar="D",
    help="Give up when orders are not settled this long after the last was created.",
)
@click.option("--progress/--no-progress", default=True, help="Progress on stderr.")
@timeout_option
@output_option()
@pass_app
def run(
    app: App,
    backend: str | None,
    namespace: str | None,
    rate: float,
    duration: str | None,
    count: int | None,
    payment_failure: float,
    out_of_stock: float,
    poison: float,
    slow: tuple[str, ...],
    crash: tuple[str, ...],
    seed: int | None,
    max_lag: int,
    max_retries: int,
    retry_backoff: str,
    stock: int,
    resume: bool,
    idle: str,
    max_wait: str,
    progress: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Run the pipeline: create orders, let the services process them, summarise.

    Needs the topology (`qctl topology apply examples/order-pipeline.yaml --yes`). Ends
    when every order is settled (final, or its poison message dead-lettered) and prints
    orders by final state, events per type, dead letters, retries and duplicates
    suppressed. Exit 1 when orders did not settle within --max-wait, 130 on Ctrl-C (the
    services commit what they handled first).
    """
    from qctl_orders.events import Faults
    from qctl_orders.pipeline import Pipeline, Plan, Progress
    from qctl_orders.services import Settings

    if duration is not None and count is not None:
        raise UsageError("give --duration or --orders, not both")
    if resume and (duration is not None or count is not None):
        raise UsageError("--resume creates no orders; drop --duration/--orders")
    wiring = _wiring(backend, namespace)
    plan = Plan(
        rate=rate or None,
        orders=count if count is not None or duration is not None else 1000,
        duration=_duration(duration, "--duration"),
        faults=Faults(payment_failure, out_of_stock, poison),
        slow={k: float(v) for k, v in _specs(slow, "--slow", "MS").items()},
        crash=_specs(crash, "--crash", "AFTER_N"),
        seed=seed,
        max_lag=max_lag,
        max_wait=_duration(max_wait, "--max-wait") or 300.0,
        resume=resume,
        idle=_duration(idle, "--idle") or 3.0,
    )
    settings = Settings(
        wiring,
        max_retries=max_retries,
        retry_backoff=_duration(retry_backoff, "--retry-backoff") or 0.5,
        stock=stock,
    )
    runs = _runbook(app, wiring)
    pipeline = Pipeline(
        wiring=wiring,
        settings=settings,
        plan=plan,
        runs=runs,
        backend_for=lambda: app.backend(wiring.backend, timeout),
        progress=Progress(progress),
        timeout=timeout,
    )
    pipeline.check_topology()
    if resume:
        record = None
        app.info(f"orders: resuming the services of {wiring.label} until they are idle")
    else:
        record = runs.create(_settings_record(plan, settings))
        what = f"{plan.orders} orders" if plan.orders else f"orders for {duration}"
        app.info(
            f"orders: run {record.run_id} on {wiring.label}: {what}"
            + (f" at {rate:g}/s" if rate else "")
        )
    interrupted = False
    try:
        pipeline.start()
        if record is None:
            pipeline.wait_idle()
        else:
            pipeline.create_orders(record)
            pipeline.wait_settled()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        pipeline.shutdown()
    summary = pipeline.summary(record)
    if record is not None:
        runs.finish(record, len(pipeline.created), summary)
    out = app.output(output)
    out.emit(summary, _summary_table)
    pipeline.check()
    if interrupted:
        raise Interrupted(
            "interrupted; the services committed what they had handled",
            "`qctl orders run --resume` lets them finish",
        )
    if pipeline.timed_out:
        unsettled = summary["orders_created"] - sum(
            summary["orders"].get(s, 0)
            for s in ("completed", "payment_failed", "refunded", "dead_lettered")
        )
        raise QctlError(
            f"{unsettled} orders were not settled within --max-wait",
            "`qctl lag` shows which service is behind; `qctl orders run --resume` continues",
        )


def _settings_record(plan: Any, settings: Any) -> dict[str, Any]:
    return {
        "rate": plan.rate,
        "orders": plan.orders,
        "duration": plan.duration,
        "payment_failure": plan.faults.payment_failure,
        "out_of_stock": plan.faults.out_of_stock,
        "poison": plan.faults.poison,
        "slow": plan.slow,
        "crash": plan.crash,
        "seed": plan.seed,
        "max_lag": plan.max_lag,
        "max_retries": settings.max_retries,
        "retry_backoff": settings.retry_backoff,
        "stock": settings.stock,
    }


def _summary_table(data: dict[str, Any]) -> str:
    from qctl.output import key_value_table

    orders = data["orders"]
    by_state = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in orders.items() if n) or "none"
    events = ", ".join(f"{n} {t}" for t, n in data["events"].items()) or "none"
    dups = ", ".join(f"{s} {n}" for s, n in data["duplicates_by_service"].items() if n)
    crashes = (
        ", ".join(
            f"{s} {n} ({data['uncommitted_at_crash'].get(s, 0)} messages handled but not "
            "committed: delivered again)"
            for s, n in data["crashes"].items()
        )
        or "none"
    )
    bp = data["backpressure"]
    rows = [
        (
            "run",
            f"{data['run'] or '(resume)'} on {data['backend']}"
            + (f" namespace {data['namespace']}" if data["namespace"] else ""),
        ),
        ("elapsed", f"{data['elapsed_seconds']}s"),
    ]
    if data["mode"] == "run":
        rows.append(("orders created", f"{data['orders_created']} ({data['orders_per_second']}/s)"))
    rows += [
        ("orders by state", by_state),
        ("events", events),
        ("dead-lettered", f"{data['dead_lettered']} (in {data['dlq']})"),
        ("retries", data["retries"]),
        ("healed", data["healed"]),
        (
            "duplicates suppressed",
            f"{data['duplicates_suppressed']}" + (f" ({dups})" if dups else ""),
        ),
        ("notifications", data["notifications"]),
        ("crashes", crashes),
        (
            "back-pressure",
            f"{bp['throttles']} throttles ({bp['throttled_seconds']}s), "
            f"{bp['refused_publishes']} publishes refused",
        ),
    ]
    return key_value_table(rows)


@orders.command("verify")
@backend_option()
@namespace_option
@run_option
@click.option(
    "--all-terminal",
    is_flag=True,
    help="Also fail while poison orders wait in the DLQ (after heal + redrive).",
)
@timeout_option
@output_option()
@pass_app
def verify(
    app: App,
    backend: str | None,
    namespace: str | None,
    run_id: str | None,
    all_terminal: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Check a run's invariants against what the brokers hold; exit 1 with what broke.

    Every order final (or, for poison orders, in the DLQ), none charged twice, refunds
    equal out-of-stock events, the DLQ holds exactly the poison messages. Reads the
    events back from the broker (Kafka: the orders topic, read_committed; RabbitMQ: the
    audit.log stream), so it works in a new process after `qctl orders run`.
    """
    from qctl_orders.verify import Reader, evaluate

    wiring = _wiring(backend, namespace)
    record = _runbook(app, wiring).resolve(run_id)
    reader = Reader(app.backend(wiring.backend, timeout), wiring, record.run_id, record.started)
    verdict = evaluate(
        record.run_id,
        reader.events(),
        reader.dead_letters(),
        record.orders_created,
        all_terminal=all_terminal,
        backend=wiring.backend,
        namespace=wiring.namespace,
    )
    out = app.output(output)
    out.emit(verdict, _verdict_table)
    if not verdict.ok:
        failed = [c.name for c in verdict.checks if not c.ok]
        raise QctlError(
            f"run {record.run_id}: {len(failed)} of {len(verdict.checks)} checks failed: "
            + "; ".join(failed),
            "the table above names the orders; `qctl dlq inspect` shows the dead letters",
        )


def _verdict_table(data: dict[str, Any]) -> str:
    from qctl.output import key_value_table, table

    states = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in data["states"].items()) or "none"
    head = key_value_table(
        [
            (
                "run",
                f"{data['run']} on {data['backend']}"
                + (f" namespace {data['namespace']}" if data["namespace"] else ""),
            ),
            ("orders", f"{data['orders']}: {states}"),
            ("poison orders", data["poison"]),
            ("dead letters", ", ".join(f"{n} in {q}" for q, n in data["dlq"].items()) or "none"),
            (
                "duplicate deliveries",
                f"{data['duplicate_deliveries']} (same event id again: "
                "at-least-once, dropped by the services)",
            ),
        ]
    )
    rows = []
    for check in data["checks"]:
        detail = check["detail"]
        if check["examples"]:
            detail += "; e.g. " + ", ".join(check["examples"])
        rows.append(
            {"check": check["name"], "result": "ok" if check["ok"] else "FAILED", "detail": detail}
        )
    body = table(rows, [("check", "CHECK"), ("result", "RESULT"), ("detail", "DETAIL")])
    verdict = "all invariants hold" if data["ok"] else "INVARIANTS BROKEN"
    return f"{head}\n\n{body}\n\n{verdict}"


@orders.command("heal")
@backend_option()
@namespace_option
@click.option(
    "--run", "run_id", metavar="RUN", help="Heal only this run; default: every recorded run."
)
@output_option()
@pass_app
def heal(
    app: App, backend: str | None, namespace: str | None, run_id: str | None, output: str | None
) -> None:
    """Deploy the fix for the poison orders: the payment service then reads them.

    The poison orders carry their total with a decimal comma; after the heal the payment
    service reads it. Running services pick the fix up within a second. Then send the
    dead letters back and let the services process them:

    \b
      qctl dlq redrive kafka:orders.dlq --yes       (rabbitmq:queue/payment.dlq)
      qctl orders run --resume
      qctl orders verify --all-terminal
    """
    wiring = _wiring(backend, namespace)
    runs = _runbook(app, wiring)
    targets = [runs.resolve(run_id)] if run_id else runs.all()
    if not targets:
        runs.latest()  # raises: no recorded run
    healed = [runs.heal(record.run_id) for record in targets]
    flags = f" -b {wiring.backend}" if wiring.backend != "kafka" else ""
    flags += f" -n {wiring.namespace}" if wiring.namespace else ""
    where = f" --where 'header.run-id == \"{run_id}\"'" if run_id else ""
    data = {
        "backend": wiring.backend,
        "namespace": wiring.namespace,
        "runs": [{"run": r.run_id, "healed_at": r.healed_at} for r in healed],
        "next": [
            f"qctl dlq redrive {wiring.payment_dlq}{where} --yes",
            f"qctl orders run --resume{flags}",
            f"qctl orders verify --all-terminal{flags}",
        ],
    }
    out = app.output(output)
    out.emit(data, _heal_table)


def _heal_table(data: dict[str, Any]) -> str:
    runs = data["runs"]
    which = runs[0]["run"] if len(runs) == 1 else f"{len(runs)} runs"
    lines = [
        f"healed {which} ({data['backend']}): the payment service now reads totals "
        "written with a decimal comma.",
        "next:",
    ]
    lines += [f"  {step}" for step in data["next"]]
    return "\n".join(lines)


@orders.command("runs")
@backend_option()
@namespace_option
@output_option()
@pass_app
def runs_command(app: App, backend: str | None, namespace: str | None, output: str | None) -> None:
    """The recorded runs of the context (newest last)."""
    from dataclasses import asdict

    wiring = _wiring(backend, namespace)
    records = [asdict(r) for r in _runbook(app, wiring).all()]
    for record in records:
        record.pop("summary", None)
    out = app.output(output)

    def render(rows: list[dict[str, Any]]) -> str:
        from qctl.output import table

        return table(
            rows,
            [
                ("run_id", "RUN"),
                ("started_at", "STARTED"),
                ("orders_created", "ORDERS"),
                ("finished_at", "FINISHED"),
                ("healed_at", "HEALED"),
            ],
            empty="(no runs)",
        )

    out.emit(records, render)


@orders.command("topology")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--namespace", "-n", required=True, metavar="NS", help="The name prefix.")
@click.option(
    "--out",
    "-f",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
def topology(file: Path, namespace: str, out_file: Path | None) -> None:
    """Write the topology FILE with every name under NAMESPACE (for side-by-side runs).

    \b
      qctl orders topology examples/order-pipeline.yaml -n ci1 -f ci1.yaml
      qctl topology apply ci1.yaml --yes
      qctl orders run -n ci1
      qctl topology destroy ci1.yaml --yes --force-delete-nonempty
    """
    from qctl_orders.topology import load, namespaced, render
    from qctl_orders.wiring import check_namespace

    checked = check_namespace(namespace)
    if checked is None:
        raise UsageError("--namespace must not be empty")
    text = render(namespaced(load(file), checked), file, checked)
    if out_file is None:
        click.echo(text, nl=False)
        return
    try:
        out_file.write_text(text)
    except OSError as exc:
        raise QctlError(f"cannot write {out_file}: {exc.strerror}") from None
    click.echo(f"wrote {out_file}", err=True)
