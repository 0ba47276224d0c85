"""Options shared by many commands, so each spells them the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from qctl.backends.base import DEFAULT_TIMEOUT

F = TypeVar("F", bound=Callable[..., Any])


def output_option(*formats: str) -> Callable[[F], F]:
    """``-o/--output``; falls back to the root ``-o`` when not given here."""
    choices = formats or ("table", "json", "yaml")
    return click.option(
        "-o",
        "--output",
        "output",
        type=click.Choice(choices),
        default=None,
        help=f"Output format ({'|'.join(choices)}); default: the global -o, else table.",
    )


def timeout_option(f: F) -> F:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        envvar="QCTL_TIMEOUT",
        help="Seconds that bound every network call.",
    )(f)


def yes_option(f: F) -> F:
    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        help="Do not ask for confirmation (needed on protected contexts when not on a terminal).",
    )(f)


def complete_backend(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from qctl.plugins import backend_names

    return [n for n in backend_names() if n.startswith(incomplete)]


def backend_option(multiple: bool = False) -> Callable[[F], F]:
    return click.option(
        "--backend",
        "-b",
        "backends" if multiple else "backend",
        multiple=multiple,
        shell_complete=complete_backend,
        help="Backend to use (kafka, rabbitmq, or an installed plugin); "
        + ("repeat for several; default: all in the context." if multiple else ""),
    )
