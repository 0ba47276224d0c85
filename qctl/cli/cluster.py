"""``qctl cluster``: is the cluster there, what runs it, and how big is it."""

from __future__ import annotations

import functools
from typing import Any

import click

from qctl.backends.base import ClusterInfo, SupportsClusterInfo, require
from qctl.cli.app import App, pass_app
from qctl.cli.options import backend_option, output_option, timeout_option
from qctl.concurrency import run_bounded
from qctl.errors import ExitCode, OperationTimeout, QctlError, UnreachableError
from qctl.output import Output, key_value_table, table


@click.group()
def cluster() -> None:
    """Reachability, versions, nodes and object counts of the context's clusters."""


@cluster.command("info")
@backend_option(multiple=True)
@timeout_option
@output_option()
@pass_app
def info(app: App, backends: tuple[str, ...], timeout: float, output: str | None) -> None:
    """Show each backend of the context: reachable or not, version, nodes, counts.

    Backends are queried in parallel and every call is bounded by --timeout, so an
    unreachable broker costs at most that long. Exit 3 when any backend is unreachable
    or refuses the credentials; the reachable ones are still shown.
    """
    from qctl.cli import error_line

    names = list(backends) or app.backend_names()
    if not names:
        raise QctlError(
            f"context {app.context().name!r} configures no installed backend",
            "add kafka or rabbitmq settings with `qctl context set`",
        )

    def probe(name: str) -> ClusterInfo:
        backend = app.backend(name, timeout)
        return require(backend, SupportsClusterInfo, "cluster info").cluster_info()

    calls = {name: functools.partial(probe, name) for name in names}
    results = run_bounded(calls, timeout=timeout + 2)
    infos: list[ClusterInfo] = []
    failures: list[QctlError] = []
    for name in names:
        outcome = results[name]
        if isinstance(outcome, ClusterInfo):
            infos.append(outcome)
            continue
        err = outcome if isinstance(outcome, QctlError) else _unexpected(name, outcome)
        failures.append(err)
        address = _address(app, name)
        infos.append(ClusterInfo(backend=name, address=address, reachable=False, error=str(err)))
    out = app.output(output)
    out.emit(infos, lambda data: _render(out, data))
    for warning in (w for i in infos for w in i.warnings):
        app.warn(warning)
    if failures:
        for err in failures[1:]:
            click.echo(error_line(str(err)), err=True)
        first = failures[0]
        codes = {f.exit_code for f in failures}
        if codes == {ExitCode.UNREACHABLE}:
            raise first
        raise QctlError(str(first)) if len(codes) > 1 else first


def _address(app: App, name: str) -> str:
    try:
        backend = app.backend(name, 1)
        return backend.target()
    except QctlError:
        return "?"


def _unexpected(name: str, exc: BaseException | None) -> QctlError:
    if exc is None:
        return OperationTimeout(f"{name} did not answer in time", "raise --timeout")
    return UnreachableError(f"{name}: unexpected {type(exc).__name__}: {exc}")


def _render(out: Output, data: list[dict[str, Any]]) -> str:
    blocks = []
    for item in data:
        status = out.status("reachable" if item["reachable"] else "unreachable")
        head = [("backend", item["backend"]), ("address", item["address"]), ("status", status)]
        if not item["reachable"]:
            blocks.append(key_value_table([*head, ("error", item["error"])]))
            continue
        head += [("version", item["version"]), ("cluster id", item["cluster_id"])]
        head += [(k.replace("_", " "), v) for k, v in item["counts"].items()]
        features = item["features"]
        if features.get("metadata_version"):
            head.append(("metadata.version", features["metadata_version"]))
        if "plugins" in features:
            enabled = [p for p, on in features["plugins"].items() if on]
            head.append(("plugins", enabled))
        if features.get("feature_flags"):
            head.append(
                ("feature flags", [f"{k}={v}" for k, v in features["feature_flags"].items()])
            )
        nodes = table(
            [
                dict(
                    n,
                    controller="*" if n["controller"] else "",
                    address=f"{n['host']}:{n['port']}" if n["port"] else n["host"] or "-",
                )
                for n in item["nodes"]
            ],
            [
                ("id", "NODE"),
                ("address", "ADDRESS"),
                ("roles", "ROLES"),
                ("controller", "ACTIVE CONTROLLER"),
                ("running", "RUNNING"),
            ],
        )
        blocks.append(key_value_table(head) + "\n\n" + nodes)
    return "\n\n".join(blocks)
