"""Options shared by many commands, so each spells them the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from qctl.backends.base import DEFAULT_TIMEOUT

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses ``nan`` and ``inf``.

    click's range check compares with ``<``, which is False for ``nan``, so ``--timeout
    nan`` used to pass and fail deep inside a client library; ``inf`` would unbound a
    wait that must stay bounded.
    """

    name = "float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


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
        type=FiniteFloatRange(min=0.1),
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


#: ``--partitioner``'s choices: ``qctl.backends.capabilities.messaging.Partitioner``'s
#: values (not imported here: the option must not load the capabilities for --help).
PARTITIONERS = ("murmur2", "crc32", "random")


def partitioner_option(f: F) -> F:
    """``--partitioner``: how Kafka records written by key are partitioned."""
    return click.option(
        "--partitioner",
        type=click.Choice(PARTITIONERS),
        help="Kafka targets, records placed by key: murmur2 (Kafka's Java client), crc32 "
        "(librdkafka's default: Python, Go, .NET, kcat) or random. Default: the context's "
        "`partitioner`, else murmur2.",
    )(f)
