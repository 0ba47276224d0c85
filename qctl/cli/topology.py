"""``qctl topology``: validate, plan, apply, export and destroy topology files."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from qctl.cli import error_line
from qctl.cli.app import App, pass_app, stdin_is_tty
from qctl.cli.options import output_option, timeout_option, yes_option
from qctl.errors import ExitCode, PartialFailure, QctlError, UsageError

BACKEND_CHOICES = click.Choice(["kafka", "rabbitmq"])


def file_argument(f: Any) -> Any:
    return click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))(
        f
    )


def env_option(f: Any) -> Any:
    return click.option(
        "--env",
        "-e",
        "env",
        metavar="NAME",
        help="Apply the file's `environments.NAME` overlay (e.g. fewer partitions in dev).",
    )(f)


def backends_option(f: Any) -> Any:
    return click.option(
        "--backend",
        "-b",
        "backends",
        multiple=True,
        type=BACKEND_CHOICES,
        help="Only this backend's section (repeatable); default: every section of the file.",
    )(f)


def delete_options(f: Any) -> Any:
    f = click.option(
        "--force-delete-nonempty",
        is_flag=True,
        help="Also delete queues and topics that still hold messages.",
    )(f)
    return click.option(
        "--max-deletes",
        type=click.IntRange(min=0),
        default=10,
        show_default=True,
        help="Refuse plans that delete more objects than this.",
    )(f)


@click.group()
def topology() -> None:
    """Topology as code: Kafka topics and RabbitMQ exchanges, queues, bindings, policies.

    One YAML file declares both brokers. `validate` checks it offline, `plan` shows a
    three-way diff (file / cluster / broker defaults), `apply` changes the cluster and
    verifies the result, `export` writes the live cluster as a file, `destroy` deletes
    what a file declares. Deletes only ever touch objects qctl owns.
    """


# -- validate ------------------------------------------------------------------------------
@topology.command("validate")
@file_argument
@env_option
@output_option("table", "json")
@pass_app
def validate_cmd(app: App, file: str, env: str | None, output: str | None) -> None:
    """Check FILE without a cluster: schema, types, references, per environment.

    Without --env the base file and every environment overlay are checked. Exit 2 with
    every error listed as FILE:LINE:COLUMN.
    """
    from qctl.topology.loader import environments_of, loads, read_text
    from qctl.topology.model import FileIssue
    from qctl.topology.validate import validate

    text, label = read_text(file)
    envs: list[str | None] = [env] if env else [None, *environments_of(text, label)]
    issues: list[FileIssue] = []
    seen: set[tuple[str, str]] = set()
    counts: dict[str, int] = {}
    for name in envs:
        topo, found = loads(text, label, env=name)
        if topo is not None:
            found += validate(topo)
            if name is None or env:
                counts = topo.counts()
        for issue in found:
            key = (str(issue.location), issue.message)
            if key in seen:
                continue
            seen.add(key)
            if name is not None and not env:
                issues.append(
                    FileIssue(
                        issue.location, f"{issue.message} [environment {name}]", issue.severity
                    )
                )
            else:
                issues.append(issue)
    issues.sort(key=lambda i: (i.location.line, i.location.column))
    errors = [i for i in issues if i.severity == "error"]
    for issue in issues:
        click.echo(str(issue), err=True)
    data = {
        "file": label,
        "valid": not errors,
        "environments": [e for e in envs if e],
        "counts": counts,
        "issues": [i.to_json() for i in issues],
    }
    out = app.output(output)
    if out.fmt == "json" or not errors:
        out.emit(data, _validate_text)
    if errors:
        raise UsageError(
            f"{label} has {len(errors)} error{'s' if len(errors) > 1 else ''}",
            "fix them (each is listed above as FILE:LINE:COLUMN)",
        )


def _validate_text(data: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in data["counts"].items() if n) or "nothing declared"
    envs = f"; environments: {', '.join(data['environments'])}" if data["environments"] else ""
    return f"{data['file']}: valid ({counts}{envs})"


# -- shared plumbing -----------------------------------------------------------------------
def _load(app: App, file: str, env: str | None) -> Any:
    from qctl.topology.loader import load
    from qctl.topology.model import TopologyFileError

    try:
        topo = load(file, env=env)
    except TopologyFileError as exc:
        for issue in sorted(exc.issues, key=lambda i: (i.location.line, i.location.column)):
            click.echo(str(issue), err=True)
        count = len(exc.issues)
        raise UsageError(
            f"{exc.path} has {count} error{'s' if count > 1 else ''}",
            "fix them (each is listed above as FILE:LINE:COLUMN)",
        ) from exc
    for warning in topo.warnings:
        click.echo(str(warning), err=True)
    return topo


def _targets(app: App, topo: Any, backends: tuple[str, ...], timeout: float) -> list[Any]:
    from qctl.backends.base import require
    from qctl.backends.capabilities.topology import SupportsTopology
    from qctl.topology.engine import Target

    names = [n for n in topo.backends() if not backends or n in backends]
    if not names:
        raise UsageError(
            f"{topo.path} declares nothing for {', '.join(backends) or 'any backend'}",
            "add a kafka: or rabbitmq: section, or change --backend",
        )
    targets = []
    for name in names:
        backend = app.backend(name, timeout)
        capable = require(backend, SupportsTopology, "topology")
        targets.append(Target(name=name, backend=capable, address=backend.target()))
    return targets


def _style(out: Any) -> Any:
    def paint(text: str, color: str | None) -> str:
        return out.style(text, fg=color) if color else text

    return paint


def _confirm(app: App, action: str, yes: bool) -> None:
    """Protected contexts: type the name; others: a yes/no question (or --yes)."""
    if yes:
        return
    if app.context().protected:
        app.confirm_mutation(action, yes)
        return
    if not stdin_is_tty():
        raise UsageError(
            f"refusing to {action} without confirmation", "pass --yes (or run in a terminal)"
        )
    click.confirm(f"About to {action}. Continue?", err=True, abort=True)


# -- plan ----------------------------------------------------------------------------------
@topology.command("plan")
@file_argument
@env_option
@backends_option
@click.option("--prune", is_flag=True, help="Also show deletes of owned objects the file dropped.")
@click.option(
    "--allow-recreate",
    is_flag=True,
    help="Plan queue/exchange recreates (no-loss migration) instead of 'unsupported'.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when the cluster matches, 5 when changes are pending.",
)
@timeout_option
@output_option("table", "json")
@pass_app
@click.pass_context
def plan_cmd(
    ctx: click.Context,
    app: App,
    file: str,
    env: str | None,
    backends: tuple[str, ...],
    prune: bool,
    allow_recreate: bool,
    detailed_exitcode: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Show what `apply FILE` would change: create, update, unsupported, delete.

    A three-way diff of the file, the live cluster and the broker's defaults: settings
    left at their default are not drift. Unsupported changes (partition decrease,
    replication-factor change, immutable queue arguments) are listed with the reason
    and how to proceed; where a RabbitMQ policy could carry a setting, the plan says so.
    """
    from qctl.topology.engine import plan_file, require_owner
    from qctl.topology.planner import PlanOptions
    from qctl.topology.render import plan_json, plan_text

    topo = _load(app, file, env)
    if prune:
        require_owner(topo, "--prune")
    targets = _targets(app, topo, backends, timeout)
    options = PlanOptions(prune=prune, allow_recreate=allow_recreate)
    plan = plan_file(topo, targets, options)
    out = app.output(output)
    out.emit(plan_json(plan), lambda d: plan_text(d, _style(out)))
    if detailed_exitcode and plan.pending():
        ctx.exit(ExitCode.DRIFT)


# -- apply ---------------------------------------------------------------------------------
@topology.command("apply")
@file_argument
@env_option
@backends_option
@click.option("--prune", is_flag=True, help="Delete owned objects the file no longer declares.")
@delete_options
@click.option(
    "--allow-recreate",
    is_flag=True,
    help="Recreate queues/exchanges whose immutable settings changed, moving every "
    "queued message to a temporary queue and back.",
)
@click.option("--dry-run", is_flag=True, help="Show the plan and change nothing.")
@yes_option
@timeout_option
@output_option("table", "json")
@pass_app
def apply_cmd(
    app: App,
    file: str,
    env: str | None,
    backends: tuple[str, ...],
    prune: bool,
    max_deletes: int,
    force_delete_nonempty: bool,
    allow_recreate: bool,
    dry_run: bool,
    yes: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Make the cluster match FILE, then re-read it and verify.

    Shows the plan and asks before changing anything (unless --yes). Unsupported changes
    abort before anything is applied, unless --allow-recreate makes a queue/exchange
    recreate explicit. Deletes need --prune and touch only objects owned by the file's
    `owner:` label (or its `prefixes:`), never more than --max-deletes, and never
    non-empty queues or topics without --force-delete-nonempty. Anything that did not
    take effect is an error: exit 4 (partial) or 1.
    """
    from qctl.topology.applier import preflight
    from qctl.topology.engine import plan_file, require_owner
    from qctl.topology.planner import PlanOptions

    topo = _load(app, file, env)
    if prune:
        require_owner(topo, "--prune")
    targets = _targets(app, topo, backends, timeout)
    options = PlanOptions(
        prune=prune, allow_recreate=allow_recreate, force_delete_nonempty=force_delete_nonempty
    )
    plan = plan_file(topo, targets, options)
    _run(app, topo, plan, targets, options, max_deletes, dry_run, yes, output, "apply", preflight)


def _run(
    app: App,
    topo: Any,
    plan: Any,
    targets: list[Any],
    options: Any,
    max_deletes: int,
    dry_run: bool,
    yes: bool,
    output: str | None,
    mode: str,
    preflight: Any,
) -> None:
    from qctl.topology.applier import ApplyReport, apply_plan, record_declared
    from qctl.topology.render import plan_json, plan_text, report_text

    out = app.output(output)
    as_json = out.fmt == "json"
    if not as_json:
        out.emit(plan_json(plan), lambda d: plan_text(d, _style(out)))
    report = ApplyReport(plan=plan)
    if dry_run or not plan.pending():
        if not dry_run and mode == "apply":
            report.warnings += record_declared(topo, targets)
        report.verified = not plan.pending()
        for warning in report.warnings:
            app.warn(warning)
        if as_json:
            out.emit({**report.to_json(), "applied": False, "dry_run": dry_run})
        return
    try:
        preflight(plan, options, max_deletes)
        count = len(plan.changes)
        where = ", ".join(f"{t.name} at {t.address}" for t in targets)
        _confirm(app, f"{mode} {count} change{'s' if count > 1 else ''} on {where}", yes)
    except QctlError:
        if as_json:
            out.emit({**report.to_json(), "applied": False, "dry_run": False})
        raise
    report = apply_plan(topo, plan, targets, options, progress=app.info, mode=mode)
    for warning in report.warnings:
        app.warn(warning)
    data = {**report.to_json(), "applied": True, "dry_run": False}
    out.emit(data, report_text)
    failed = report.failed
    if not failed and report.verified:
        return
    succeeded = [r for r in report.results if r.ok]
    problems = [f"{r.change.kind} {r.change.name!r}: {r.error}" for r in failed]
    problems += [
        f"{c.kind} {c.name!r} still differs after apply ({c.action})" for c in report.remaining
    ]
    for line in problems[1:]:
        click.echo(error_line(str(line)), err=True)
    what = f"{mode} did not fully take effect: {problems[0]}"
    hint = "see the report above; run `qctl topology plan` to see what is left"
    if succeeded:
        raise PartialFailure(what, hint)
    raise QctlError(what, hint)


# -- destroy -------------------------------------------------------------------------------
@topology.command("destroy")
@file_argument
@env_option
@backends_option
@delete_options
@click.option("--dry-run", is_flag=True, help="Show what would be deleted and delete nothing.")
@yes_option
@timeout_option
@output_option("table", "json")
@pass_app
def destroy_cmd(
    app: App,
    file: str,
    env: str | None,
    backends: tuple[str, ...],
    max_deletes: int,
    force_delete_nonempty: bool,
    dry_run: bool,
    yes: bool,
    timeout: float,
    output: str | None,
) -> None:
    """Delete what FILE declares, with the same safety rules as --prune.

    Only objects owned by the file's `owner:` label (recorded by an earlier apply) or
    matching its `prefixes:` are deleted; others are listed as kept. Internal objects
    are never touched; at most --max-deletes objects; non-empty queues and topics only
    with --force-delete-nonempty.
    """
    from qctl.topology.applier import preflight
    from qctl.topology.engine import plan_file, require_owner
    from qctl.topology.planner import PlanOptions

    topo = _load(app, file, env)
    require_owner(topo, "destroy")
    targets = _targets(app, topo, backends, timeout)
    options = PlanOptions(force_delete_nonempty=force_delete_nonempty)
    plan = plan_file(topo, targets, options, mode="destroy")
    for bplan in plan.backends:
        for skipped in bplan.skipped:
            app.warn(f"keeping {skipped.backend} {skipped.kind} {skipped.name!r}: {skipped.reason}")
    _run(app, topo, plan, targets, options, max_deletes, dry_run, yes, output, "destroy", preflight)


# -- export --------------------------------------------------------------------------------
@topology.command("export")
@backends_option
@click.option("--include", metavar="REGEX", help="Only objects whose name matches (re.search).")
@click.option("--exclude", metavar="REGEX", help="Leave out objects whose name matches.")
@click.option("--vhost", metavar="VHOST", help="RabbitMQ vhost to export (default: the context's).")
@click.option("--owner", metavar="LABEL", help="Write `owner: LABEL` into the exported file.")
@click.option(
    "--file",
    "-f",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@timeout_option
@output_option("yaml", "json")
@pass_app
def export_cmd(
    app: App,
    backends: tuple[str, ...],
    include: str | None,
    exclude: str | None,
    vhost: str | None,
    owner: str | None,
    out_file: Path | None,
    timeout: float,
    output: str | None,
) -> None:
    """Write the live cluster as a topology file (defaults and internal objects omitted).

    Applying the export right away plans zero changes. Filter with --include/--exclude
    (regular expressions on object names).
    """
    import json

    from qctl.backends.base import require
    from qctl.backends.capabilities.topology import SupportsTopology, TopologyQuery
    from qctl.topology.export import ExportFilter, document, export_kafka, export_rabbit, to_yaml

    filt = ExportFilter(_regex(include, "--include"), _regex(exclude, "--exclude"))
    names = list(backends) or [n for n in app.backend_names() if n in ("kafka", "rabbitmq")]
    if not names:
        raise UsageError("the context has no kafka or rabbitmq settings to export")
    kafka = rabbit = None
    for name in names:
        backend = require(app.backend(name, timeout), SupportsTopology, "topology")
        scope = vhost if name == "rabbitmq" else None
        live = backend.topology_describe(TopologyQuery(scope=scope, names=None))
        if name == "kafka":
            kafka = export_kafka(live, filt)
        else:
            rabbit = export_rabbit(live, filt, vhost)
    doc = document(kafka, rabbit, owner)
    fmt = output if output in ("yaml", "json") else "yaml"
    if fmt == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        text = to_yaml(doc, header=f"qctl topology export (context {app.context().name})")
    if out_file is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        out_file.write_text(text)
    except OSError as exc:
        raise QctlError(f"cannot write {out_file}: {exc.strerror or exc}") from exc
    app.info(f"wrote {out_file}")


def _regex(value: str | None, option: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as exc:
        raise UsageError(f"{option} {value!r} is not a valid regular expression: {exc}") from exc
