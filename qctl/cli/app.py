"""Per-invocation state shared by all commands (``click.Context.obj``).

It holds the root options and builds, on first use, the config, the resolved context,
the output renderer and backends. Nothing here touches the network or imports a client
library until a command asks for a backend.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from qctl.config import SECRETS, ConfigFile, ResolvedContext, world_readable
from qctl.errors import ConfigError, QctlError, UsageError
from qctl.output import Output, color_enabled

if TYPE_CHECKING:
    from qctl.backends.base import Backend

log = logging.getLogger("qctl")


@dataclass
class App:
    """Root options plus lazily built config, context and backends."""

    context_name: str | None = None
    config_path: Path | None = None
    output_format: str | None = None
    verbose: int = 0
    no_color: bool = False
    _config: ConfigFile | None = field(default=None, repr=False)
    _context: ResolvedContext | None = field(default=None, repr=False)
    _backends: list[Backend] = field(default_factory=list, repr=False)
    _insecure_warned: set[str] = field(default_factory=set, repr=False)

    # -- configuration --------------------------------------------------------------------
    def config(self) -> ConfigFile:
        if self._config is None:
            self._config = ConfigFile.load(self.config_path)
            if self._config.exists and world_readable(self._config.path):
                self.warn(
                    f"config file {self._config.path} is accessible by other users; "
                    f"run `chmod 600 {self._config.path}`"
                )
        return self._config

    def context(self) -> ResolvedContext:
        if self._context is None:
            self._context = self.config().resolve(self.context_name)
            log.debug("using context %s (%s)", self._context.name, self._context.source)
        return self._context

    # -- output ---------------------------------------------------------------------------
    def output(self, fmt: str | None = None) -> Output:
        chosen = fmt or self.output_format or "table"
        return Output(chosen, color=color_enabled(self.no_color, sys.stdout))

    def warn(self, message: str) -> None:
        from qctl.cli import one_line

        click.echo(f"qctl: warning: {SECRETS.scrub(one_line(message))}", err=True)

    def info(self, message: str) -> None:
        """Diagnostics that are not data: always stderr, so pipes carry only data."""
        click.echo(SECRETS.scrub(message), err=True)

    # -- backends -------------------------------------------------------------------------
    def backend_names(self) -> list[str]:
        """Backends configured in the current context that are installed."""
        from qctl.plugins import backend_names

        installed = backend_names()
        return [name for name in self.context().backends if name in installed]

    def check_backend(self, name: str) -> None:
        """Fail now (exit 2) when the context has no settings for backend ``name``.

        Commands with two ends (a source and a target) call it for the far end before
        they start on the near one, so a typo in a reference costs no network round.
        """
        ctx = self.context()
        if name not in ctx.backends:
            raise ConfigError(
                f"context {ctx.name!r} has no {name} settings",
                f"add them with `qctl context set {ctx.name} ...` or pick another context",
            )

    def backend(self, name: str, timeout: float) -> Backend:
        from qctl.backends.base import BackendConfig
        from qctl.plugins import load_backend

        ctx = self.context()
        self.check_backend(name)
        settings = ctx.settings_for(name, warn=self.warn)
        assert settings is not None
        cls = load_backend(name)
        backend = cls.from_config(
            BackendConfig(context=ctx.name, settings=settings, timeout=timeout)
        )
        self._backends.append(backend)
        self._warn_if_insecure(name, settings)
        return backend

    def _warn_if_insecure(self, name: str, settings: dict[str, Any]) -> None:
        """Every run that uses a section with ``insecure: true`` says so (once per backend)."""
        from qctl.security import insecure_warning, is_insecure

        if name in self._insecure_warned or not is_insecure(settings, name):
            return
        self._insecure_warned.add(name)
        self.warn(insecure_warning(self.context().name, name))

    def close(self) -> None:
        while self._backends:
            backend = self._backends.pop()
            try:
                backend.close()
            except Exception:  # closing must never mask the command's own result
                log.debug("closing %s failed", backend.name, exc_info=True)

    # -- safety ---------------------------------------------------------------------------
    def confirm_mutation(self, action: str, yes: bool) -> None:
        """On a protected context, make the user type its name before changing anything.

        ``action`` completes "about to ...", e.g. "apply 3 changes to the cluster".
        """
        ctx = self.context()
        if not ctx.protected or yes:
            return
        if not stdin_is_tty():
            raise UsageError(
                f"context {ctx.name!r} is protected; refusing to {action} without confirmation",
                "pass --yes, or run in a terminal and type the context name",
            )
        click.echo(f"Context {ctx.name!r} is protected. About to {action}.", err=True)
        typed = click.prompt(
            "Type the context name to continue", err=True, default="", show_default=False
        )
        if typed.strip() != ctx.name:
            raise QctlError("confirmation did not match the context name; nothing was changed")


def stdin_is_tty() -> bool:
    """Whether a human can answer a prompt (a function so tests can stand in for one)."""
    return sys.stdin.isatty()


def get_app(ctx: click.Context | None = None) -> App:
    """The App of the current invocation (an empty one when a command runs standalone)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = App()
    app: App = root.obj
    return app


def pass_app(f: Any) -> Any:
    """Decorator: call the command with the App as first argument."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(get_app(), *args, **kwargs)

    return wrapper
