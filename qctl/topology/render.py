"""Plans and apply reports as stable JSON and as readable text (no printing here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from qctl.backends.capabilities.topology import ChangeResult, FieldChange, TopologyChange
from qctl.topology.planner import Plan

SYMBOLS = {"create": "+", "update": "~", "recreate": "±", "unsupported": "!", "delete": "-"}

Style = Callable[[str, str | None], str]


def field_json(f: FieldChange) -> dict[str, Any]:
    return {
        "field": f.field,
        "live": f.live,
        "desired": f.desired,
        "unset": f.unset,
        "note": f.note,
    }


def change_json(change: TopologyChange) -> dict[str, Any]:
    return {
        "backend": change.backend,
        "kind": change.kind,
        "name": change.name,
        "action": change.action,
        "fields": [field_json(f) for f in change.fields],
        "reason": change.reason,
        "hint": change.hint,
        "messages": change.messages,
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "file": plan.file,
        "env": plan.env,
        "owner": plan.owner,
        "backends": [
            {"backend": b.backend, "target": b.target, "scope": b.scope} for b in plan.backends
        ],
        "summary": plan.summary(),
        "changes": [change_json(c) for c in plan.changes],
        "skipped": [
            {"backend": s.backend, "kind": s.kind, "name": s.name, "reason": s.reason}
            for b in plan.backends
            for s in b.skipped
        ],
    }


def result_json(result: ChangeResult) -> dict[str, Any]:
    return {
        "backend": result.change.backend,
        "kind": result.change.kind,
        "name": result.change.name,
        "action": result.change.action,
        "ok": result.ok,
        "error": result.error,
        "details": result.details,
    }


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value == "":
        return '""'
    return str(value)


def describe_field(f: FieldChange, action: str) -> str:
    name = f.field.removeprefix("config:")
    if action == "create":
        return f"{name}={_value(f.desired)}"
    if f.unset:
        target = _value(f.desired) if f.desired is not None else "default"
        text = f"{name}: {_value(f.live)} -> (unset: {target})"
    else:
        text = f"{name}: {_value(f.live)} -> {_value(f.desired)}"
    if f.note:
        text += f" ({f.note})"
    return text


def plan_text(data: dict[str, Any], style: Style | None = None) -> str:
    """The human view of ``plan_json`` output."""
    paint: Style = style or (lambda text, _color: text)
    colors = {"create": "green", "update": "yellow", "recreate": "magenta", "delete": "red"}
    colors["unsupported"] = "red"
    lines: list[str] = []
    for backend in data["backends"]:
        scope = f", vhost {backend['scope']}" if backend["backend"] == "rabbitmq" else ""
        lines.append(f"{backend['backend']} ({backend['target']}{scope})")
        changes = [c for c in data["changes"] if c["backend"] == backend["backend"]]
        skipped = [s for s in data["skipped"] if s["backend"] == backend["backend"]]
        if not changes:
            lines.append("  no changes")
        for change in changes:
            action = change["action"]
            head = f"  {SYMBOLS[action]} {action:<11} {change['kind']:<8} {change['name']}"
            lines.append(paint(head, colors.get(action)))
            fields = change["fields"]
            if action == "create" and fields:
                parts = [describe_field(_field(f), action) for f in fields]
                lines.append("      " + ", ".join(parts))
            elif action != "create":
                lines += [f"      {describe_field(_field(f), action)}" for f in fields]
            if change.get("messages") and change["kind"] in ("queue", "topic"):
                lines.append(f"      holds {change['messages']} message(s)")
            if change.get("reason") and action in ("unsupported", "recreate", "update"):
                lines.append(f"      why: {change['reason']}")
            if change.get("hint"):
                lines.append(f"      hint: {change['hint']}")
        for item in skipped:
            lines.append(f"  = keep        {item['kind']:<8} {item['name']} ({item['reason']})")
    summary = data["summary"]
    lines.append("")
    if not data["changes"]:
        lines.append("No changes. The cluster matches the file.")
    else:
        lines.append(
            f"Plan: {summary['create']} to create, {summary['update']} to update, "
            f"{summary['recreate']} to recreate, {summary['unsupported']} unsupported, "
            f"{summary['delete']} to delete."
        )
    return "\n".join(lines)


def _field(data: dict[str, Any]) -> FieldChange:
    return FieldChange(data["field"], data["live"], data["desired"], data["unset"], data["note"])


def report_text(data: dict[str, Any], style: Style | None = None) -> str:
    """The human view of an apply/destroy report (after the plan was shown)."""
    lines: list[str] = []
    for result in data["results"]:
        status = "ok" if result["ok"] else "FAILED"
        line = f"  {status:<6} {result['action']:<9} {result['kind']:<8} {result['name']}"
        details = result.get("details") or {}
        if details:
            line += "  " + ", ".join(f"{k}={v}" for k, v in details.items())
        if result["error"]:
            line += f"  — {result['error']}"
        lines.append(line)
    if data["remaining"]:
        lines.append("")
        lines.append("Not in effect after apply (verified by re-reading the cluster):")
        for change in data["remaining"]:
            fields = "; ".join(
                describe_field(_field(f), change["action"]) for f in change["fields"]
            )
            lines.append(
                f"  {change['action']} {change['kind']} {change['name']} {fields}".rstrip()
            )
    ok = sum(1 for r in data["results"] if r["ok"])
    lines.append("")
    verdict = "verified" if data["verified"] else "NOT verified"
    lines.append(f"Applied {ok} of {len(data['results'])} change(s); cluster state {verdict}.")
    return "\n".join(lines)
