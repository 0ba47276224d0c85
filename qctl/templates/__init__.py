"""Message templates for ``qctl produce --template``: realistic test events.

A template is any object with a ``name``, a one-line ``description`` and a
``generate(rng, start)`` method returning an endless iterator of ``Message`` objects,
registered under the ``qctl.templates`` entry-point group. qctl's own order-pipeline
templates are registered the same way (see ``qctl.templates.orders``), so a plugin adds
templates exactly as qctl does::

    [project.entry-points."qctl.templates"]
    shipment-dispatched = "my_plugin.templates:SHIPMENT_DISPATCHED"

Given the same ``rng`` seed and ``start`` a template must produce the same messages:
``--seed`` makes test data reproducible byte for byte.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from qctl.errors import NotFoundError, QctlError, UsageError
from qctl.messages import Message

TEMPLATES_GROUP = "qctl.templates"

#: Where event times start with ``--seed`` (so seeded output does not depend on the clock).
SEEDED_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@runtime_checkable
class Template(Protocol):
    """What a template plugin provides."""

    name: str
    description: str

    def generate(self, rng: random.Random, start: dt.datetime) -> Iterator[Message]:
        """Messages, endlessly; event times start at ``start`` and move forward."""
        ...


@dataclass(frozen=True)
class TemplateInfo:
    """One template as ``qctl produce --list-templates`` shows it."""

    name: str
    description: str
    source: str
    error: str | None = None


def template_names() -> list[str]:
    from qctl.plugins import _entry_points

    return sorted({ep.name for ep in _entry_points(TEMPLATES_GROUP)})


def load_template(name: str) -> Template:
    """The template registered as ``name``; NotFoundError (exit 2 hint) when unknown."""
    from qctl.plugins import _load

    try:
        obj = _load(TEMPLATES_GROUP, name)
    except NotFoundError:
        known = ", ".join(template_names()) or "none installed"
        raise UnknownTemplate(
            f"unknown template {name!r}", f"templates: {known} (`qctl produce --list-templates`)"
        ) from None
    if not isinstance(obj, Template):
        raise QctlError(
            f"template plugin {name!r} is not a template",
            "a template needs name, description and generate(rng, start)",
        )
    return obj


class UnknownTemplate(UsageError):
    """A ``--template`` name nobody registered: bad input, exit 2."""


def template_infos() -> list[TemplateInfo]:
    """Every registered template, with the distribution that provides it."""
    from qctl.plugins import _dist, _entry_points

    infos: list[TemplateInfo] = []
    seen: set[str] = set()
    for ep in _entry_points(TEMPLATES_GROUP):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist, _version = _dist(ep)
        try:
            template = load_template(ep.name)
        except QctlError as exc:
            infos.append(TemplateInfo(ep.name, "", dist or ep.value, error=exc.what))
            continue
        infos.append(TemplateInfo(ep.name, template.description, dist or ep.value))
    return infos
