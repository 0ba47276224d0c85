"""Prometheus exposition, thresholds and the live view's rows, from recorded data."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qctl.lag.model import Status
from qctl.lag.prometheus import render
from qctl.lag.thresholds import Thresholds, find_breaches
from qctl.tui.rows import build_rows, sparkline
from tests.tui.recorded import record, with_error


@pytest.fixture
def recorded():  # type: ignore[no-untyped-def]
    return record()


def samples_by_name(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    found = [v for lab, v in samples if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (labels, found)
    return found[0]


def test_prometheus_exposition_parses_and_carries_the_numbers(recorded) -> None:  # type: ignore[no-untyped-def]
    snap = recorded.snapshot()
    text = render(with_error(snap, "schemareg", "down"))
    metrics = samples_by_name(text)
    assert "# TYPE qctl_consumergroup_lag gauge" in text
    lag = metrics["qctl_consumergroup_lag"]
    assert value(lag, group="orders-service", context="staging") == 510
    part = metrics["qctl_consumergroup_partition_lag"]
    assert value(part, group="orders-service", topic="orders", partition="2") == 170
    assert value(metrics["qctl_consumergroup_data_lost_messages"], group="reporting") == 100
    assert value(metrics["qctl_consumergroup_partition_backlog"], group="billing") == 535
    status = metrics["qctl_consumergroup_status"]
    assert value(status, group="orders-service", status="WARN") == 1
    assert value(status, group="orders-service", status="OK") == 0
    assert value(metrics["qctl_consumergroup_members"], group="orders-service") == 2
    assert value(metrics["qctl_partition_log_start_offset"], topic="orders", partition="0") == 300
    assert value(metrics["qctl_queue_messages_ready"], queue="invoices") == 225
    assert value(metrics["qctl_queue_dead_letter"], queue="emails.dlq") == 1
    assert value(metrics["qctl_queue_status"], queue="invoices", status="STOP") == 1
    up = metrics["qctl_lag_up"]
    assert value(up, backend="kafka") == 1 and value(up, backend="schemareg") == 0
    # Unknown values are left out rather than exported as 0 or NaN.
    assert not [lab for lab, _ in part if lab["group"] == "billing" and lab["partition"] == "1"]


def test_prometheus_escapes_label_values(recorded) -> None:  # type: ignore[no-untyped-def]
    snap = recorded.snapshot()
    snap.groups[0].group = 'we"ird\\name\n'
    metrics = samples_by_name(render(snap))
    assert value(metrics["qctl_consumergroup_lag"], group='we"ird\\name\n') >= 0


def test_thresholds(recorded) -> None:  # type: ignore[no-untyped-def]
    snap = recorded.snapshot()
    assert find_breaches(snap, Thresholds()) == []
    over = find_breaches(snap, Thresholds(messages=500))
    assert {(b.kind, b.name) for b in over} == {("group", "orders-service"), ("group", "reporting")}
    assert over[0].describe() == "group orders-service (kafka): lag 510 > 500"
    timed = find_breaches(snap, Thresholds(time_lag_seconds=300))
    assert {b.name for b in timed} == {"reporting", "invoices"}
    assert any("queue invoices (rabbitmq): time lag 11m 10s > 5m" in b.describe() for b in timed)


def test_rows_sort_filter_and_backend(recorded) -> None:  # type: ignore[no-untyped-def]
    snap, history = recorded.snapshot(), recorded.history
    by_lag = build_rows(snap, history, sort="lag")
    assert [r.name for r in by_lag][:3] == ["reporting", "orders-service", "invoices"]
    by_time = build_rows(snap, history, sort="time lag")
    assert by_time[0].name == "invoices"  # oldest message: 10 minutes
    by_status = build_rows(snap, history, sort="status")
    assert by_status[0].status is Status.ERR
    assert [r.name for r in build_rows(snap, history, sort="name")][:2] == ["billing", "emails"]
    assert [r.name for r in build_rows(snap, history, text_filter="EMAIL")] == [
        "emails",
        "emails.dlq",
    ]
    assert {r.backend for r in build_rows(snap, history, backend="rabbitmq")} == {"rabbitmq"}
    stale = build_rows(snap, history, stale_backends=["kafka"])
    assert all(r.stale == (r.backend == "kafka") for r in stale)
    dlq = next(r for r in by_lag if r.name == "emails.dlq")
    assert dlq.kind == "dlq" and "dead letters" in dlq.detail


def test_sparkline() -> None:
    assert sparkline([], 4) == "    "
    assert sparkline([0, 0], 4) == "  ▁▁"
    assert sparkline([0, 4, 8], 3) == "▁▅█"
    assert sparkline(list(range(100)), 5) == "█████"  # the last 5, on a scale from 0
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"


def test_fast_json_matches_the_generic_conversion(recorded) -> None:  # type: ignore[no-untyped-def]
    import json

    from qctl.lag.jsonout import dumps, plain
    from qctl.output import to_jsonable

    snap = recorded.snapshot()
    data = plain(snap)
    assert data == to_jsonable(snap)
    text = dumps(data)
    assert json.loads(text) == data
    lines = text.splitlines()
    # One partition per line, each a complete JSON object.
    rows = [ln.strip().rstrip(",") for ln in lines if ln.strip().startswith('{"topic"')]
    assert len(rows) == sum(len(g.partitions) for g in snap.groups)
    assert all(json.loads(row)["topic"] for row in rows)
    assert dumps({"partitions": [], "x": {}}) == '{\n  "partitions": [],\n  "x": {}\n}'
