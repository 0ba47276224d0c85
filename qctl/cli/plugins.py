"""``qctl plugins``: what backends and command plugins are installed, and their state."""

from __future__ import annotations

from typing import Any

import click

from qctl.cli.app import App, pass_app
from qctl.cli.options import output_option
from qctl.output import table


@click.group()
def plugins() -> None:
    """Installed backends and command plugins.

    Plugins are Python distributions that register entry points: backends under
    `qctl.backends` (a class implementing qctl.backends.base.Backend) and commands under
    `qctl.commands` (a click command or group). See docs/plugins.md.
    """


@plugins.command("list")
@output_option()
@pass_app
def list_plugins(app: App, output: str | None) -> None:
    """List plugins: name, kind, version, and load error if any."""
    from qctl.cli import BUILTIN_COMMANDS
    from qctl.plugins import inventory

    infos = inventory(builtin_commands=set(BUILTIN_COMMANDS))

    def render(rows: list[dict[str, Any]]) -> str:
        out = app.output(output)
        shown = [
            dict(
                r,
                status=out.status("loaded") if r["loaded"] else out.status("error"),
                capabilities=r["capabilities"] or [],
            )
            for r in rows
        ]
        text = table(
            shown,
            [
                ("name", "NAME"),
                ("kind", "KIND"),
                ("version", "VERSION"),
                ("distribution", "DISTRIBUTION"),
                ("status", "STATUS"),
                ("capabilities", "CAPABILITIES"),
            ],
        )
        errors = [f"{r['name']}: {r['error']}" for r in rows if r["error"]]
        return text + ("\n\nErrors:\n  " + "\n  ".join(errors) if errors else "")

    app.output(output).emit(infos, render)
