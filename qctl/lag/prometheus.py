"""``qctl lag -o prometheus``: a snapshot in the Prometheus text exposition format.

For the node-exporter textfile collector or a push to a Pushgateway from cron. The
metric names are documented in docs/lag.md. prometheus_client does the formatting and
label escaping; this module only decides what to expose.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qctl.lag.model import LagSnapshot, Status

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

PREFIX = "qctl"


class _Families:
    """Gauge families created on first use, in a stable order."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, doc: str, labels: dict[str, str], value: float | None) -> None:
        if value is None:
            return
        from prometheus_client.core import GaugeMetricFamily

        family = self._families.get(name)
        if family is None:
            family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))
            self._families[name] = family
        family.add_metric(list(labels.values()), float(value))

    def collect(self) -> Iterator[Any]:
        yield from self._families.values()


def render(snapshot: LagSnapshot) -> str:
    from prometheus_client.exposition import generate_latest

    families = _Families()
    ctx = snapshot.context
    _backends(families, snapshot)
    seen_partitions: set[tuple[str, str, int]] = set()
    for g in snapshot.groups:
        gl = {"context": ctx, "backend": g.backend, "group": g.group}
        families.add("consumergroup_lag", "Messages the group has not consumed.", gl, g.lag)
        families.add(
            "consumergroup_lag_seconds",
            "Age of the oldest unconsumed message across the group's partitions.",
            gl,
            g.time_lag_seconds,
        )
        families.add(
            "consumergroup_backlog",
            "Messages in partitions the group never committed, counted from log-start.",
            gl,
            g.backlog,
        )
        families.add(
            "consumergroup_data_lost_messages",
            "Messages retention removed before the group read them.",
            gl,
            g.data_lost,
        )
        families.add("consumergroup_members", "Members of the group.", gl, len(g.members))
        families.add(
            "consumergroup_consume_rate",
            "Offsets committed per second over the evaluation window.",
            gl,
            g.evaluation.consume_rate,
        )
        families.add(
            "consumergroup_produce_rate",
            "Messages appended per second to the group's partitions over the window.",
            gl,
            g.evaluation.produce_rate,
        )
        families.add(
            "consumergroup_eta_seconds",
            "Seconds until the group catches up at the current rates.",
            gl,
            g.evaluation.eta_seconds,
        )
        _status(families, "consumergroup_status", gl, g.evaluation.status)
        families.add(
            "consumergroup_state",
            "The group's coordinator state (1 for the current one).",
            {**gl, "state": g.state},
            1,
        )
        for p in g.partitions:
            pl = {**gl, "topic": p.topic, "partition": str(p.partition)}
            families.add(
                "consumergroup_partition_lag", "Messages not consumed in the partition.", pl, p.lag
            )
            families.add(
                "consumergroup_partition_lag_seconds",
                "Age of the message at the committed offset.",
                pl,
                p.time_lag_seconds,
            )
            families.add(
                "consumergroup_partition_committed_offset", "The committed offset.", pl, p.committed
            )
            families.add(
                "consumergroup_partition_backlog",
                "Never committed: messages from log-start to the end.",
                pl,
                p.backlog,
            )
            families.add(
                "consumergroup_partition_data_lost_messages",
                "Messages removed by retention below the committed offset.",
                pl,
                p.data_lost,
            )
            key = (g.backend, p.topic, p.partition)
            if key in seen_partitions:
                continue
            seen_partitions.add(key)
            tl = {"context": ctx, "backend": g.backend, "topic": p.topic}
            tl["partition"] = str(p.partition)
            families.add("partition_log_start_offset", "Log-start offset.", tl, p.log_start)
            families.add("partition_log_end_offset", "High watermark.", tl, p.log_end)
            families.add("partition_last_stable_offset", "Last stable offset.", tl, p.last_stable)
    for q in snapshot.queues:
        ql = {"context": ctx, "backend": q.backend, "vhost": q.vhost, "queue": q.queue}
        families.add("queue_messages_ready", "Messages ready for delivery.", ql, q.ready)
        families.add(
            "queue_messages_unacked", "Messages delivered but not acknowledged.", ql, q.unacked
        )
        families.add("queue_messages", "Queue depth: ready + unacknowledged.", ql, q.depth)
        families.add("queue_consumers", "Consumers attached.", ql, q.consumers)
        families.add(
            "queue_consumer_utilisation",
            "Fraction of time consumers could take messages.",
            ql,
            q.consumer_utilisation,
        )
        families.add("queue_publish_rate", "Messages published per second.", ql, q.publish_rate)
        families.add("queue_deliver_rate", "Messages delivered per second.", ql, q.deliver_rate)
        families.add("queue_ack_rate", "Messages acknowledged per second.", ql, q.ack_rate)
        families.add(
            "queue_lag_seconds",
            "Age of the oldest message (publisher-set timestamp).",
            ql,
            q.time_lag_seconds,
        )
        families.add(
            "queue_drain_eta_seconds",
            "Seconds until the queue is empty at the current rates.",
            ql,
            q.evaluation.eta_seconds,
        )
        families.add(
            "queue_dead_letter", "1 if the queue is a dead-letter queue.", ql, q.dead_letter
        )
        families.add(
            "queue_dead_letter_inflow_rate",
            "Dead-letter queues: messages arriving per second.",
            ql,
            q.inflow_rate,
        )
        _status(families, "queue_status", ql, q.evaluation.status)
    return generate_latest(families).decode("utf-8")


def _backends(families: _Families, snapshot: LagSnapshot) -> None:
    failed = {e.backend for e in snapshot.errors}
    for name in sorted(set(snapshot.targets) | failed):
        families.add(
            "lag_up",
            "1 if the backend answered for this snapshot.",
            {"context": snapshot.context, "backend": name},
            0 if name in failed else 1,
        )


def _status(families: _Families, name: str, labels: dict[str, str], current: Status) -> None:
    for status in Status:
        families.add(
            name,
            "Burrow-style status: 1 for the current one (OK, WARN, REWIND, STALL, STOP, ERR).",
            {**labels, "status": status.value},
            1 if status is current else 0,
        )
