"""``qctl offsets``: review, reset, verify and undo consumer-group offsets.

Every change is a plan first (what moves, by how many messages, over which time span)
and is applied only with ``--execute``; applying saves an undo snapshot, refuses groups
with live members, and reads every partition back. The logic lives in ``qctl.offsets``;
this module parses options and renders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from qctl.cli.app import App, pass_app
from qctl.cli.options import backend_option, output_option, timeout_option, yes_option
from qctl.errors import UsageError
from qctl.output import Output, key_value_table, table

if TYPE_CHECKING:
    from qctl.backends.base import Backend
    from qctl.backends.capabilities.groups import SupportsConsumerGroups
    from qctl.offsets.model import OffsetPlan
    from qctl.offsets.scope import TopicSpec
    from qctl.offsets.strategies import Strategy

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_BACKEND = "kafka"
STRATEGY_FLAGS = (
    "--to-earliest, --to-latest, --to-current, --to-offset N, --shift-by N, "
    "--to-datetime TS, --by-duration D, --from-file CSV or --to-group OTHER"
)


@click.group()
def offsets() -> None:
    """Review, reset, verify and undo consumer-group offsets.

    Changes print a plan and apply it only with --execute. Before writing, the group's
    offsets are saved so `qctl offsets undo` can restore them; after writing, every
    partition is read back, and any that did not take fails the command (exit 4).
    """


def group_option(f: F) -> F:
    return click.option(
        "--group", "-g", required=True, metavar="GROUP", help="The consumer group."
    )(f)


def topics_option(required: bool = False, help_text: str = "") -> Callable[[F], F]:
    return click.option(
        "--topic",
        "-t",
        "topics",
        multiple=True,
        required=required,
        metavar="TOPIC[:P,P]",
        help=help_text
        or "Topic, or some of its partitions (orders:0,2 or kafka:orders/2); repeatable.",
    )


def execute_option(f: F) -> F:
    return click.option(
        "--execute",
        is_flag=True,
        help="Apply the plan (without it, only the plan is printed and nothing changes).",
    )(f)


# -- show ---------------------------------------------------------------------------------
@offsets.command("show")
@group_option
@topics_option(help_text="Only these topics (all their partitions are shown); repeatable.")
@backend_option()
@timeout_option
@output_option()
@pass_app
def show(
    app: App,
    group: str,
    topics: tuple[str, ...],
    backend: str | None,
    timeout: float,
    output: str | None,
) -> None:
    """Where a group is: committed offsets, log ends, lag, members.

    Per partition: committed offset, log-start, log-end (high watermark), last-stable
    offset, lag, and the timestamp of the message at the committed offset; then the
    group's state and members (client id, host, assigned partitions).
    """
    from qctl.offsets.show import show_offsets

    specs = _specs(topics)
    be, groups = _groups(app, backend, timeout)
    result = show_offsets(groups, group, target=_target(be), specs=specs)
    out = app.output(output)
    out.emit(_show_json(result), lambda data: _render_show(out, data))


# -- reset --------------------------------------------------------------------------------
@offsets.command("reset")
@group_option
@topics_option()
@click.option("--all-topics", is_flag=True, help="Every partition the group has committed.")
@click.option("--to-earliest", is_flag=True, help="To log-start.")
@click.option("--to-latest", is_flag=True, help="To log-end (skip everything not yet read).")
@click.option(
    "--to-current", is_flag=True, help="Keep committed offsets; uncommitted ones to log-end."
)
@click.option("--to-offset", type=int, metavar="N", help="To offset N (clamped to the log).")
@click.option(
    "--shift-by", type=int, metavar="N", help="Move by N (negative: replay); clamped to the log."
)
@click.option(
    "--to-datetime",
    metavar="TS",
    help="To the first message at or after TS: ISO-8601, UTC unless a zone is given "
    "(2026-11-27T10:00:00+01:00, '2026-11-27 10:00 Europe/Berlin').",
)
@click.option(
    "--by-duration",
    metavar="DURATION",
    help="To the first message of the last DURATION (PT2H, P1DT6H, 2h, -2h).",
)
@click.option(
    "--from-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="CSV",
    help="Offsets from a CSV file: topic,partition,offset per line (clamped to the log).",
)
@click.option("--to-group", metavar="OTHER", help="Copy the committed offsets of group OTHER.")
@execute_option
@click.option("--new-group", is_flag=True, help="Allow creating a group that does not exist yet.")
@yes_option
@backend_option()
@timeout_option
@output_option()
@pass_app
def reset(
    app: App,
    group: str,
    topics: tuple[str, ...],
    all_topics: bool,
    to_earliest: bool,
    to_latest: bool,
    to_current: bool,
    to_offset: int | None,
    shift_by: int | None,
    to_datetime: str | None,
    by_duration: str | None,
    from_file: Path | None,
    to_group: str | None,
    execute: bool,
    new_group: bool,
    yes: bool,
    backend: str | None,
    timeout: float,
    output: str | None,
) -> None:
    """Move a group's committed offsets (plan; --execute applies).

    Strategies are those of kafka-consumer-groups --reset-offsets, with the same results.

    Without --execute, prints the plan: per partition the current and new offset, the
    messages replayed or skipped and the time span they cover. Out-of-range offsets are
    clamped to log-start/log-end with a warning; a time past the last message maps to
    log-end. Refuses (exit 1) while the group has active members.
    """
    from qctl.offsets.planner import plan_reset

    strategy = _strategy(
        group,
        to_earliest=to_earliest,
        to_latest=to_latest,
        to_current=to_current,
        to_offset=to_offset,
        shift_by=shift_by,
        to_datetime=to_datetime,
        by_duration=by_duration,
        from_file=from_file,
        to_group=to_group,
    )
    specs = _specs(topics)
    be, groups = _groups(app, backend, timeout)
    plan = plan_reset(
        groups,
        group,
        strategy,
        target=_target(be),
        specs=specs,
        all_topics=all_topics,
        allow_new_group=new_group,
    )
    _run(app, be, groups, plan, execute, yes, output, verb="reset")


# -- undo / history -----------------------------------------------------------------------
@offsets.command("undo")
@click.argument("snapshot", required=False)
@group_option
@execute_option
@yes_option
@timeout_option
@output_option()
@pass_app
def undo(
    app: App,
    snapshot: str | None,
    group: str,
    execute: bool,
    yes: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Restore the offsets saved before a change (plan; --execute applies).

    Without SNAPSHOT, the group's newest snapshot is restored.

    SNAPSHOT is an id from `qctl offsets history`. Partitions that had no committed
    offset get theirs removed again. Undo saves a snapshot too, so it can be undone.
    """
    from qctl.offsets.planner import plan_reset
    from qctl.offsets.snapshots import SnapshotStore
    from qctl.offsets.strategies import Restore

    snap = SnapshotStore().load(group, snapshot)
    context = app.context().name
    if snap.context != context:
        raise UsageError(
            f"snapshot {snap.id} was taken on context {snap.context!r} ({snap.target}), "
            f"not on {context!r}",
            f"rerun with `qctl -C {snap.context} offsets undo ...`",
        )
    be, groups = _groups(app, snap.backend, timeout)
    plan = plan_reset(groups, group, Restore(snap.id, snap.offsets), target=_target(be))
    _run(app, be, groups, plan, execute, yes, output, verb="undo")


@offsets.command("history")
@group_option
@output_option()
@pass_app
def history(app: App, group: str, output: str | None) -> None:
    """List the group's undo snapshots, newest first."""
    from qctl.offsets.snapshots import SnapshotStore

    snaps = [s.summary() for s in SnapshotStore().history(group)]
    out = app.output(output)
    out.emit(
        snaps,
        lambda data: table(
            data,
            [
                ("id", "SNAPSHOT"),
                ("created", "CREATED"),
                ("action", "ACTION"),
                ("partitions", "PARTITIONS"),
                ("context", "CONTEXT"),
            ],
            empty=f"(no snapshots for group {group})",
        ),
    )


# -- delete -------------------------------------------------------------------------------
@offsets.command("delete")
@group_option
@topics_option(required=True, help_text="Topic (or TOPIC:P,P) whose offsets go; repeatable.")
@execute_option
@yes_option
@backend_option()
@timeout_option
@output_option()
@pass_app
def delete(
    app: App,
    group: str,
    topics: tuple[str, ...],
    execute: bool,
    yes: bool,
    backend: str | None,
    timeout: float,
    output: str | None,
) -> None:
    """Delete a group's committed offsets for topics (plan; --execute applies).

    Undoable with `qctl offsets undo`.

    Brokers refuse topics the group's live members subscribe to; that fails the
    command naming them.
    """
    from qctl.offsets.planner import plan_reset
    from qctl.offsets.strategies import DeleteOffsets

    specs = _specs(topics)
    be, groups = _groups(app, backend, timeout)
    plan = plan_reset(groups, group, DeleteOffsets(), target=_target(be), specs=specs)
    if not plan.partitions:
        app.info(
            f"Group {group!r} has no committed offsets for "
            f"{', '.join(map(str, specs))}: nothing to delete."
        )
        return
    _run(app, be, groups, plan, execute, yes, output, verb="delete", refuse_active=False)


# -- shared flow --------------------------------------------------------------------------
def _run(
    app: App,
    be: Backend,
    groups: SupportsConsumerGroups,
    plan: OffsetPlan,
    execute: bool,
    yes: bool,
    output: str | None,
    verb: str,
    refuse_active: bool = True,
) -> None:
    from qctl.backends.base import require
    from qctl.backends.capabilities.offsets import SupportsOffsetAdmin
    from qctl.offsets.executor import Where, execute_plan, raise_for_failures
    from qctl.offsets.model import GroupActive, member_summary
    from qctl.offsets.snapshots import SnapshotStore

    for warning in plan.warnings:
        app.warn(warning)
    out = app.output(output)
    if not execute:
        out.emit(plan.to_json(), lambda data: _render_plan(out, data))
        if plan.active and refuse_active:
            app.warn(
                f"group {plan.group!r} is active ({member_summary(plan.members)}); "
                "--execute will refuse until its members stop"
            )
        app.info(_summary(plan) + " Plan only, nothing changed: add --execute to apply it.")
        return
    if plan.active and refuse_active:
        from qctl.backends.capabilities.groups import GroupDescription

        action = "restore its offsets" if verb == "undo" else "reset its offsets"
        raise GroupActive(GroupDescription(plan.group, plan.state, plan.members), action)
    admin = require(be, SupportsOffsetAdmin, "changing committed offsets")
    count = len(plan.partitions)
    ctx = app.context()
    if ctx.protected and not yes:
        # Whoever types the context name should see what they are agreeing to; stderr,
        # so that stdout still carries exactly one result.
        click.echo(_render_plan(Output("table"), plan.to_json()), err=True)
        app.info(_summary(plan))
    app.confirm_mutation(
        f"{verb} the offsets of group {plan.group!r} on {count} partition"
        f"{'s' if count != 1 else ''}",
        yes,
    )
    execute_plan(
        groups,
        admin,
        plan,
        SnapshotStore(),
        Where(context=ctx.name, backend=be.name, target=be.target()),
        action=f"{verb} {plan.description}",
        refuse_active=refuse_active,
    )
    out.emit(plan.to_json(), lambda data: _render_plan(out, data))
    ok = sum(1 for c in plan.partitions if c.status == "ok")
    done = "deleted" if verb == "delete" else "written"
    app.info(f"{_summary(plan)} {ok} of {count} partitions {done} and verified.")
    if plan.snapshot:
        app.info(
            f"Undo snapshot {plan.snapshot}: revert with "
            f"`qctl offsets undo --group {plan.group} {plan.snapshot} --execute`."
        )
    raise_for_failures(plan, verb)


def _strategy(
    group: str,
    *,
    to_earliest: bool,
    to_latest: bool,
    to_current: bool,
    to_offset: int | None,
    shift_by: int | None,
    to_datetime: str | None,
    by_duration: str | None,
    from_file: Path | None,
    to_group: str | None,
) -> Strategy:
    """Exactly one strategy, parsed before anything touches the network."""
    from qctl.offsets import strategies as s
    from qctl.offsets.csvfile import load_offsets_csv
    from qctl.timespec import parse_duration, parse_instant

    given = {
        "--to-earliest": to_earliest or None,
        "--to-latest": to_latest or None,
        "--to-current": to_current or None,
        "--to-offset": to_offset,
        "--shift-by": shift_by,
        "--to-datetime": to_datetime,
        "--by-duration": by_duration,
        "--from-file": from_file,
        "--to-group": to_group,
    }
    chosen = [name for name, value in given.items() if value is not None]
    if not chosen:
        raise UsageError("no reset strategy given", f"choose one of {STRATEGY_FLAGS}")
    if len(chosen) > 1:
        raise UsageError(
            f"choose one strategy, not {' and '.join(chosen)}", f"one of {STRATEGY_FLAGS}"
        )
    if to_earliest:
        return s.ToEarliest()
    if to_latest:
        return s.ToLatest()
    if to_current:
        return s.ToCurrent()
    if to_offset is not None:
        return s.ToOffset(to_offset)
    if shift_by is not None:
        return s.ShiftBy(shift_by)
    if to_datetime is not None:
        return s.ToDatetime(parse_instant(to_datetime))
    if by_duration is not None:
        return s.ByDuration(parse_duration(by_duration.strip().removeprefix("-")))
    if from_file is not None:
        return s.FromFile(str(from_file), load_offsets_csv(from_file, group))
    assert to_group is not None
    if not to_group.strip():
        raise UsageError("--to-group is empty", "name the group to copy offsets from")
    return s.ToGroup(to_group)


def _specs(topics: tuple[str, ...]) -> list[TopicSpec]:
    from qctl.offsets.scope import parse_topic_spec

    return [parse_topic_spec(t) for t in topics]


def _groups(
    app: App, backend: str | None, timeout: float
) -> tuple[Backend, SupportsConsumerGroups]:
    from qctl.backends.base import require
    from qctl.backends.capabilities.groups import SupportsConsumerGroups

    be = app.backend(backend or DEFAULT_BACKEND, timeout)
    return be, require(be, SupportsConsumerGroups, "consumer groups")


def _target(be: Backend) -> str:
    return f"{be.name} at {be.target()}"


def _summary(plan: OffsetPlan) -> str:
    totals = plan.totals()
    state = plan.state + (", does not exist yet" if plan.new_group else "")
    text = (
        f"Group {plan.group} ({state}), {plan.description}: {totals['changing']} of "
        f"{totals['partitions']} partitions change"
    )
    if totals["replay"] or totals["skip"]:
        text += f"; {totals['replay']} messages replayed, {totals['skip']} skipped"
    if totals["clamped"]:
        text += f"; {totals['clamped']} clamped"
    return text + "."


# -- rendering ----------------------------------------------------------------------------
def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _stamp(value: str | None) -> str | None:
    when = _when(value)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if when else None


def _span(row: dict[str, Any]) -> str | None:
    from qctl.timespec import format_duration

    start, end = _when(row.get("span_start")), _when(row.get("span_end"))
    if start is None or end is None:
        return None
    first = start.strftime("%Y-%m-%d %H:%M:%S")
    last = end.strftime("%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S")
    return f"{first} → {last} ({format_duration(end - start)})"


def _change(row: dict[str, Any]) -> str | None:
    if row.get("replay"):
        return f"replay {row['replay']}"
    if row.get("skip"):
        return f"skip {row['skip']}"
    if row.get("new") is None:
        return "remove"
    if row.get("current") is not None and row["current"] == row["new"]:
        return "none"
    return None


def _render_plan(out: Output, data: dict[str, Any]) -> str:
    rows = []
    for row in data["partitions"]:
        note = row.get("error") or row.get("note")
        if row.get("clamped"):
            note = f"clamped from {row['requested']} to {row['clamped']}"
        rows.append(
            dict(
                row,
                current="-" if row["current"] is None else row["current"],
                new="(none)" if row["new"] is None else row["new"],
                change=_change(row),
                span=_span(row),
                note=note,
                status=out.status(row["status"]),
            )
        )
    columns = [
        ("topic", "TOPIC"),
        ("partition", "PARTITION"),
        ("current", "CURRENT"),
        ("new", "NEW"),
        ("log_start", "LOG-START"),
        ("log_end", "LOG-END"),
        ("change", "CHANGE"),
        ("span", "TIME SPAN (UTC)"),
    ]
    if data["executed"]:
        columns.append(("status", "STATUS"))
    columns.append(("note", "NOTE"))
    return table(rows, columns, empty="(no partitions)")


def _show_json(result: Any) -> dict[str, Any]:
    from qctl.offsets.model import members_json
    from qctl.output import to_jsonable

    return {
        "group": result.group,
        "state": result.state,
        "members": members_json(result.members),
        "total_lag": result.total_lag(),
        "partitions": to_jsonable(result.partitions),
    }


def _render_show(out: Output, data: dict[str, Any]) -> str:
    head = key_value_table(
        [
            ("group", data["group"]),
            ("state", data["state"]),
            ("members", len(data["members"])),
            ("total lag", data["total_lag"]),
        ]
    )
    rows = [
        dict(
            row,
            committed_at=_stamp(row["committed_timestamp"]),
        )
        for row in data["partitions"]
    ]
    parts = table(
        rows,
        [
            ("topic", "TOPIC"),
            ("partition", "PARTITION"),
            ("committed", "COMMITTED"),
            ("log_start", "LOG-START"),
            ("log_end", "LOG-END"),
            ("last_stable", "LAST-STABLE"),
            ("lag", "LAG"),
            ("committed_at", "COMMITTED MESSAGE AT (UTC)"),
            ("consumer", "CONSUMER"),
            ("note", "NOTE"),
        ],
        empty="(no committed offsets)",
    )
    blocks = [head, parts]
    if data["members"]:
        blocks.append(
            table(
                [dict(m, partitions=len(m["assignment"])) for m in data["members"]],
                [
                    ("member_id", "MEMBER"),
                    ("client_id", "CLIENT-ID"),
                    ("host", "HOST"),
                    ("group_instance_id", "INSTANCE"),
                    ("partitions", "PARTITIONS"),
                ],
            )
        )
    return "\n\n".join(blocks)
