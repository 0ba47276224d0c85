"""Entry-point discovery for backends and command plugins.

qctl's own Kafka and RabbitMQ backends are found exactly like a third party's: through
the ``qctl.backends`` entry-point group of installed distributions. Command plugins add a
click command or group under ``qctl.commands``. A plugin that fails to import, or
exports the wrong kind of object, is reported (``qctl plugins list``) and skipped with
one warning: it never breaks the rest of qctl.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from qctl.errors import NotFoundError, QctlError

if TYPE_CHECKING:
    import click

    from qctl.backends.base import Backend

BACKENDS_GROUP = "qctl.backends"
COMMANDS_GROUP = "qctl.commands"
TEMPLATES_GROUP = "qctl.templates"

#: Entry-point groups and the kind of plugin each holds, as ``plugins list`` shows it.
GROUPS = {BACKENDS_GROUP: "backend", COMMANDS_GROUP: "command", TEMPLATES_GROUP: "template"}


class PluginLoadError(QctlError):
    """A plugin is installed but cannot be used."""


@dataclass
class PluginInfo:
    """One installed plugin as ``qctl plugins list`` reports it."""

    name: str
    kind: str
    version: str | None
    distribution: str | None
    entry_point: str
    loaded: bool
    error: str | None = None
    capabilities: list[str] | None = None


@cache
def _entry_points(group: str) -> tuple[EntryPoint, ...]:
    """Entry points of ``group``; the first registration of a name wins, in a stable order."""
    eps = sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value))
    return tuple(eps)


def _dist(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def backend_names() -> list[str]:
    return sorted({ep.name for ep in _entry_points(BACKENDS_GROUP)})


def command_names() -> list[str]:
    return sorted({ep.name for ep in _entry_points(COMMANDS_GROUP)})


_loaded: dict[tuple[str, str], Any] = {}
_warned: set[tuple[str, str]] = set()


def _load(group: str, name: str) -> Any:
    """Load the first entry point registered as ``name``; raise PluginLoadError on failure."""
    key = (group, name)
    if key in _loaded:
        return _loaded[key]
    matches = [ep for ep in _entry_points(group) if ep.name == name]
    if not matches:
        raise NotFoundError(f"no {GROUPS[group]} plugin named {name!r}")
    ep = matches[0]
    try:
        obj = ep.load()
    except Exception as exc:  # any import-time failure of third-party code
        raise PluginLoadError(
            f"{GROUPS[group]} plugin {name!r} ({ep.value}) failed to load: "
            f"{type(exc).__name__}: {exc}",
            "reinstall or upgrade it; `qctl plugins list` shows every plugin's state",
        ) from exc
    _validate(group, name, ep, obj)
    _loaded[key] = obj
    return obj


def _validate(group: str, name: str, ep: EntryPoint, obj: Any) -> None:
    if group == BACKENDS_GROUP:
        if not (isinstance(obj, type) and callable(getattr(obj, "from_config", None))):
            raise PluginLoadError(
                f"backend plugin {name!r} ({ep.value}) is not a backend class",
                "a backend class needs a `name` and a `from_config` classmethod",
            )
        declared = getattr(obj, "name", None)
        if declared != name:
            raise PluginLoadError(
                f"backend plugin {name!r} ({ep.value}) calls itself {declared!r}",
                "the entry-point name and the class's `name` must agree",
            )
    elif group == TEMPLATES_GROUP:
        if not (callable(getattr(obj, "generate", None)) and getattr(obj, "name", None) == name):
            raise PluginLoadError(
                f"template plugin {name!r} ({ep.value}) is not a template",
                "a template needs a `name` equal to its entry-point name, a `description` "
                "and `generate(rng, start)`",
            )
    elif group == COMMANDS_GROUP:
        import click

        if not isinstance(obj, click.Command):
            raise PluginLoadError(
                f"command plugin {name!r} ({ep.value}) is not a click command",
                "register a click.Command or click.Group object",
            )


def load_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``."""
    try:
        cls: type[Backend] = _load(BACKENDS_GROUP, name)
    except NotFoundError:
        known = ", ".join(backend_names()) or "none"
        raise NotFoundError(f"no backend named {name!r}", f"installed backends: {known}") from None
    return cls


def load_command(name: str) -> click.Command | None:
    """A plugin's click command, or None (with one warning) when it cannot be loaded."""
    try:
        cmd: click.Command = _load(COMMANDS_GROUP, name)
    except NotFoundError:
        return None
    except PluginLoadError as exc:
        warn_once(COMMANDS_GROUP, name, str(exc))
        return None
    return cmd


def warn_once(group: str, name: str, message: str) -> None:
    if (group, name) in _warned:
        return
    _warned.add((group, name))
    print(f"qctl: warning: {message}", file=sys.stderr)


def inventory(builtin_commands: set[str] | None = None) -> list[PluginInfo]:
    """Every installed plugin, loaded, with its version and any load error."""
    from qctl.backends.base import capabilities

    result: list[PluginInfo] = []
    for group, kind in GROUPS.items():
        seen: set[str] = set()
        for ep in _entry_points(group):
            dist, version = _dist(ep)
            info = PluginInfo(
                name=ep.name,
                kind=kind,
                version=version,
                distribution=dist,
                entry_point=ep.value,
                loaded=False,
            )
            if ep.name in seen:
                info.error = "another plugin already registered this name; this one is ignored"
            elif group == COMMANDS_GROUP and builtin_commands and ep.name in builtin_commands:
                info.error = "shadowed by the built-in command of the same name"
            else:
                try:
                    obj = _load(group, ep.name)
                except QctlError as exc:
                    info.error = exc.what
                else:
                    info.loaded = True
                    if group == BACKENDS_GROUP:
                        info.capabilities = capabilities(obj)
            seen.add(ep.name)
            result.append(info)
    return result


def reset_cache() -> None:
    """Forget discovered and loaded plugins (tests install plugins at run time)."""
    _entry_points.cache_clear()
    _loaded.clear()
    _warned.clear()
