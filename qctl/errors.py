"""Exceptions that know their exit code.

Every failure a user can cause or meet ends as one of these, so the CLI can print a
single ``qctl: error: <what> — <how to fix>`` line and exit with the documented code
instead of a traceback. Engines and backends raise them; only ``qctl.cli`` prints them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes (README, ``man qctl``)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    PARTIAL = 4
    DRIFT = 5
    THRESHOLD = 6
    INTERRUPTED = 130


class QctlError(Exception):
    """Base class: a message for the user plus, ideally, how to fix it."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, what: str, hint: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.what} — {self.hint}" if self.hint else self.what


class UsageError(QctlError):
    """Bad arguments or an invalid input file (click's convention: exit 2)."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The config file or a context in it is unusable."""


class UnsupportedCapability(UsageError):
    """The selected backend cannot do what the command needs."""

    def __init__(self, backend: str, capability: str) -> None:
        super().__init__(
            f"backend {backend!r} does not support {capability}",
            "choose another backend with --backend, or install a plugin that adds it",
        )
        self.backend = backend
        self.capability = capability


class UnreachableError(QctlError):
    """The cluster could not be reached in time (exit 3)."""

    exit_code = ExitCode.UNREACHABLE


class AuthenticationError(UnreachableError):
    """The cluster refused our credentials or certificates (exit 3)."""


class OperationTimeout(UnreachableError):
    """A bounded network call ran out of time (exit 3)."""


class NotFoundError(QctlError):
    """A named resource (topic, queue, group, context, plugin) does not exist."""


class PartialFailure(QctlError):
    """Some items succeeded and some failed (exit 4); details go to stderr or JSON."""

    exit_code = ExitCode.PARTIAL


class DriftDetected(QctlError):
    """Pending changes, reported only when the user asked for --detailed-exitcode."""

    exit_code = ExitCode.DRIFT


class ThresholdExceeded(QctlError):
    """A user-given threshold was exceeded (exit 6)."""

    exit_code = ExitCode.THRESHOLD


class Interrupted(QctlError):
    """The user interrupted; state was left consistent and resumable (exit 130)."""

    exit_code = ExitCode.INTERRUPTED
