"""Apply a plan, record ownership on the cluster, then re-read and verify.

Safety rules enforced before anything is changed (``preflight``): unsupported changes
abort the whole apply; more deletes than ``--max-deletes`` abort; deleting an object
that holds messages needs ``--force-delete-nonempty``. After applying, the cluster is
read again and planned against the file: whatever did not take effect is reported as
a failure, never as success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.capabilities.topology import (
    BindingSpec,
    ChangeResult,
    Progress,
    TopologyChange,
    TopologyQuery,
)
from qctl.errors import QctlError
from qctl.topology.engine import (
    Target,
    binding_sources,
    desired_names,
    dlqs_of,
    read_ownership,
    scope_of,
)
from qctl.topology.migrate import migrate_queue, recreate_exchange
from qctl.topology.model import TopologyFile
from qctl.topology.ownership import is_empty, updated_record
from qctl.topology.planner import (
    PENDING_MIGRATION,
    Plan,
    PlanOptions,
    plan_rabbit,
    plan_topics,
)

#: How long verification waits for the cluster to show what was applied.
VERIFY_WINDOW = 10.0


class PlanRefused(QctlError):
    """The plan contains something the user did not allow; nothing was changed."""


@dataclass
class ApplyReport:
    plan: Plan
    results: list[ChangeResult] = field(default_factory=list)
    verified: bool = False
    #: Changes still pending after apply (what did not take effect).
    remaining: list[TopologyChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ChangeResult]:
        return [r for r in self.results if not r.ok]

    def to_json(self) -> dict[str, Any]:
        """Stable JSON: ``plan``, ``results``, ``verified``, ``remaining``, ``warnings``."""
        from qctl.topology.render import change_json, plan_json, result_json

        return {
            "plan": plan_json(self.plan),
            "results": [result_json(r) for r in self.results],
            "verified": self.verified,
            "remaining": [change_json(c) for c in self.remaining],
            "warnings": self.warnings,
        }


def preflight(plan: Plan, options: PlanOptions, max_deletes: int) -> None:
    """Refuse the plan before anything is applied; the message lists every reason."""
    problems: list[str] = []
    unsupported = [c for c in plan.changes if c.action == "unsupported"]
    for change in unsupported:
        text = f"{change.backend} {change.kind} {change.name!r}: {change.reason}"
        problems.append(text + (f" ({change.hint})" if change.hint else ""))
    deletes = [c for c in plan.changes if c.action == "delete"]
    if len(deletes) > max_deletes:
        problems.append(
            f"the plan deletes {len(deletes)} objects, more than --max-deletes {max_deletes} "
            "(raise it if that is intended)"
        )
    for change in deletes:
        if change.messages and not options.force_delete_nonempty:
            problems.append(
                f"{change.backend} {change.kind} {change.name!r} holds {change.messages} "
                "message(s); pass --force-delete-nonempty to delete it anyway"
            )
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more; see the plan)" if len(problems) > 1 else ""
        hint = "nothing was changed"
        if unsupported and any(c.kind in ("queue", "exchange") for c in unsupported):
            hint = "nothing was changed; --allow-recreate migrates queues without losing messages"
        raise PlanRefused(f"refusing to apply: {first}{more}", hint)


def apply_plan(
    topo: TopologyFile,
    plan: Plan,
    targets: list[Target],
    options: PlanOptions,
    progress: Progress | None = None,
    mode: str = "apply",
) -> ApplyReport:
    """Apply every backend's changes, record ownership, verify."""
    report = ApplyReport(plan=plan)
    say = progress or (lambda _m: None)
    by_name = {t.name: t for t in targets}
    recorded: list[tuple[Target, list[ChangeResult]]] = []
    for bplan in plan.backends:
        target = by_name[bplan.backend]
        scope = scope_of(topo, target.name)
        changes = bplan.changes
        direct = [
            c for c in changes if c.action in ("create", "update") and not _is_pending_migration(c)
        ]
        results: list[ChangeResult] = []
        if direct:
            results += target.backend.topology_apply(scope, direct, progress)
        for change in changes:
            if change.action == "recreate" and change.kind == "queue":
                results.append(migrate_queue(target.backend, scope, change, progress))
            elif change.action == "recreate" and change.kind == "exchange":
                results.append(recreate_exchange(target.backend, scope, change, progress))
            elif _is_pending_migration(change):
                results.append(
                    migrate_queue(target.backend, scope, change, progress, resume_only=True)
                )
        deletes = [c for c in changes if c.action == "delete"]
        if deletes:
            results += target.backend.topology_apply(scope, deletes, progress)
        report.results += results
        recorded.append((target, results))
        if results:
            say(f"{target.name}: {sum(r.ok for r in results)} of {len(results)} change(s) applied")
    # Recording ownership and re-reading the cluster are independent: side by side.
    from concurrent.futures import ThreadPoolExecutor

    def record_all() -> None:
        for target, results in recorded:
            _record_ownership(topo, target, results, report, mode)

    with ThreadPoolExecutor(max_workers=1) as pool:
        recording = pool.submit(record_all)
        report.remaining = verify(topo, plan, targets, options, mode)
        recording.result()
    report.verified = not report.remaining
    return report


def _is_pending_migration(change: TopologyChange) -> bool:
    return any(f.field == PENDING_MIGRATION for f in change.fields)


def _record_ownership(
    topo: TopologyFile,
    target: Target,
    results: list[ChangeResult],
    report: ApplyReport,
    mode: str,
) -> None:
    if not topo.owner:
        return
    deleted: dict[str, list[str]] = {}
    for result in results:
        if result.ok and result.change.action == "delete":
            name = result.change.name
            if result.change.kind == "binding" and result.change.live is not None:
                name = result.change.live.key()
            deleted.setdefault(result.change.kind, []).append(name)
    if mode == "apply":
        declared = {k: sorted(v) for k, v in desired_names(topo, target.name).items()}
        dlqs = dlqs_of(topo, target.name)
    else:
        declared, dlqs = {}, {}
    if not declared and not deleted:
        return
    try:
        ownership = target.ownership or read_ownership(target, topo)
        scope = target.live.scope if target.live else ""
        record = updated_record(
            ownership.mine(), topo.owner, scope, declared, dlqs, topo.prefixes, deleted
        )
        target.backend.topology_write_owner_record(record, delete=is_empty(record))
    except QctlError as exc:
        report.warnings.append(
            f"{target.name}: could not record ownership for {topo.owner!r}: {exc} "
            "(a later --prune will not know these objects are owned)"
        )


def record_declared(topo: TopologyFile, targets: list[Target]) -> list[str]:
    """After an apply with nothing to change, still record what the file declares.

    A file applied to objects that already exist (an export with an ``owner:`` added,
    say) takes ownership of them; the record is written only when it would change.
    """
    warnings: list[str] = []
    if not topo.owner:
        return warnings
    for target in targets:
        try:
            ownership = target.ownership or read_ownership(target, topo)
            previous = ownership.mine()
            scope = target.live.scope if target.live else ""
            declared = {k: sorted(v) for k, v in desired_names(topo, target.name).items()}
            record = updated_record(
                previous, topo.owner, scope, declared, dlqs_of(topo, target.name), topo.prefixes
            )
            if previous is not None and _same_record(previous.to_json(), record.to_json()):
                continue
            target.backend.topology_write_owner_record(record)
        except QctlError as exc:
            warnings.append(f"{target.name}: could not record ownership for {topo.owner!r}: {exc}")
    return warnings


def _same_record(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("owner", "resources", "dlqs", "prefixes")
    return all(a.get(k) == b.get(k) for k in keys)


def verify(
    topo: TopologyFile,
    plan: Plan,
    targets: list[Target],
    options: PlanOptions,
    mode: str = "apply",
    window: float = VERIFY_WINDOW,
) -> list[TopologyChange]:
    """Re-read the cluster until it matches the file (or the window ends).

    Kafka propagates new topics and configs to every broker's metadata asynchronously,
    so Kafka differences are re-read for a while; the RabbitMQ management API answers
    from the same database the declarations went to, so one re-read settles it.
    """
    deadline = time.monotonic() + window
    attempts = 0
    while True:
        remaining = _remaining(topo, plan, targets, options, mode)
        attempts += 1
        eventual = any(c.backend == "kafka" for c in remaining)
        if not remaining or time.monotonic() >= deadline or (not eventual and attempts > 1):
            return remaining
        time.sleep(0.5)


def _remaining(
    topo: TopologyFile,
    plan: Plan,
    targets: list[Target],
    options: PlanOptions,
    mode: str,
) -> list[TopologyChange]:
    remaining: list[TopologyChange] = []
    by_name = {t.name: t for t in targets}
    for bplan in plan.backends:
        target = by_name[bplan.backend]
        deleted = {c.name for c in bplan.changes if c.action == "delete" and c.kind != "binding"}
        names: set[str] = set(deleted)
        for kind, kind_names in desired_names(topo, target.name).items():
            if kind != "binding" and mode == "apply":
                names |= kind_names
        # Only bindings the file declares or the plan deleted are checked, so only their
        # source exchanges need reading.
        sources = set(binding_sources(topo, target.name)) if mode == "apply" else set()
        for change in bplan.changes:
            if change.kind == "binding" and isinstance(change.live, BindingSpec):
                sources.add(change.live.source)
        live = target.backend.topology_describe(
            TopologyQuery(
                scope=scope_of(topo, target.name),
                names=frozenset(names),
                binding_sources=frozenset(sources),
            )
        )
        if mode == "apply":
            no_recreate = PlanOptions(allow_recreate=False)
            if target.name == "kafka" and topo.kafka is not None:
                remaining += plan_topics(topo.kafka.topics, live, target.name)
            if target.name == "rabbitmq" and topo.rabbitmq is not None:
                remaining += plan_rabbit(topo.rabbitmq, live, no_recreate, target.name)
        present = {
            "topic": set(live.topics),
            "exchange": set(live.exchanges),
            "queue": set(live.queues),
            "policy": set(live.policies),
        }
        live_bindings = {b.key() for b in live.bindings}
        for change in bplan.changes:
            if change.action != "delete":
                continue
            if change.kind == "binding":
                still = change.live is not None and change.live.key() in live_bindings
            else:
                still = change.name in present.get(change.kind, set())
            if still:
                remaining.append(change)
    return remaining
