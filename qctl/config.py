"""Contexts: named cluster profiles, environment overrides and secret redaction.

A context names one Kafka cluster and one RabbitMQ cluster (either may be absent), in the
spirit of kubectl's contexts, so a user switches between dev and production with one
flag. Each backend reads its own section of the context, keyed by the backend's name, so
a third-party backend gets its settings the same way the built-in ones do.

The file keeps what the user wrote (``${VAR}`` references stay unexpanded on disk);
expansion and environment overrides happen only when a context is resolved for use.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qctl.errors import ConfigError, NotFoundError

LOCAL_CONTEXT = "local"

#: What qctl talks to when there is no config file: the brokers ``dev/brokers up`` starts.
LOCAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "kafka": {"bootstrap_servers": "localhost:9092"},
    "rabbitmq": {
        "url": "amqp://guest:guest@localhost:5672/",
        "management_url": "http://localhost:15672",
    },
}

#: Environment variables that override one setting of whichever context is selected.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "QCTL_KAFKA_BOOTSTRAP": ("kafka", "bootstrap_servers"),
    "QCTL_RABBITMQ_URL": ("rabbitmq", "url"),
    "QCTL_RABBITMQ_MANAGEMENT_URL": ("rabbitmq", "management_url"),
}

#: Keys of a context that are not backend sections.
CONTEXT_SCALAR_KEYS = {"protected", "description"}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
_VAR_RE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A key holds a secret when its name says so; paths to secret files are not secrets.
_SECRET_KEY_RE = re.compile(r"(pass(word)?|secret|token|credential|jaas|private|\.key\.pem)", re.I)
_NOT_SECRET_SUFFIXES = ("_file", ".location", "_command", "_path")

REDACTED = "***"


def default_config_path() -> Path:
    """``$QCTL_CONFIG``, else the XDG config dir (``~/.config/qctl/config.yaml``)."""
    env = os.environ.get("QCTL_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("qctl", appauthor=False)) / "config.yaml"


def state_dir() -> Path:
    """Where qctl keeps state between runs (offset undo snapshots, lag history, jobs)."""
    env = os.environ.get("QCTL_STATE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("qctl", appauthor=False))


def is_secret_key(key: str) -> bool:
    """True when a setting named ``key`` holds a credential that must never be shown."""
    lowered = key.lower()
    if lowered.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return bool(_SECRET_KEY_RE.search(lowered))


def redact_url(url: str) -> str:
    """Replace the password of ``scheme://user:password@host`` with ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{REDACTED}@{netloc[1]}"))


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a (possibly nested) settings mapping that is safe to print."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out[key] = redact_settings(value)
        elif is_secret_key(str(key)) and value not in (None, ""):
            out[key] = REDACTED
        elif isinstance(value, str) and "://" in value:
            out[key] = redact_url(value)
        else:
            out[key] = value
    return out


class SecretRegistry:
    """Every secret value qctl has seen in this process, scrubbed from any text it prints.

    Redacting by key catches what qctl renders itself; this catches what a library puts
    into an error message (a URL in a pika exception, a password echoed by a server).
    """

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str | None) -> None:
        if value and len(value) >= 3:
            self._values.add(value)

    def scrub(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text

    def collect(self, settings: Mapping[str, Any]) -> None:
        for key, value in settings.items():
            if isinstance(value, Mapping):
                self.collect(value)
            elif isinstance(value, str):
                if is_secret_key(str(key)):
                    self.add(value)
                elif "://" in value:
                    self.add(url_password(value))


SECRETS = SecretRegistry()


def expand_vars(value: Any, where: str, environ: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` in every string of ``value``; ``$${VAR}`` is a literal ``${VAR}``."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(1):
                return "${" + match.group(2) + "}"
            name = match.group(2)
            if name not in env:
                raise ConfigError(
                    f"{where} uses ${{{name}}}, which is not set",
                    f"export {name}=... or edit the config file",
                )
            return env[name]

        return _VAR_RE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: expand_vars(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_vars(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    return value


@dataclass
class Context:
    """One named context as written in the file (unexpanded)."""

    name: str
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    protected: bool = False
    description: str | None = None

    def to_yaml(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.description:
            data["description"] = self.description
        if self.protected:
            data["protected"] = True
        data.update(copy.deepcopy(self.backends))
        return data


@dataclass
class ResolvedContext:
    """A context ready for use: variables expanded and environment overrides applied."""

    name: str
    backends: dict[str, dict[str, Any]]
    protected: bool
    source: str
    overrides: list[str] = field(default_factory=list)
    base_dir: Path | None = None
    _ready: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def settings_for(
        self, backend: str, warn: Callable[[str], None] | None = None
    ) -> dict[str, Any] | None:
        """The backend's settings ready to connect with: secret sources resolved.

        Only here do ``*_file`` and ``*_command`` settings get read or run (see
        :mod:`qctl.secrets`), so showing a context never runs a command. The result is
        a copy: the resolved secrets never reach the :class:`ConfigFile` that ``save()``
        writes.
        """
        from qctl.secrets import URL_PASSWORD_BACKENDS, resolve_sources

        if backend in self._ready:
            return self._ready[backend]
        settings = self.backends.get(backend)
        if settings is None:
            return None
        ready = resolve_sources(
            settings,
            f"context {self.name!r} {backend}",
            base_dir=self.base_dir,
            warn=warn,
            url_password=backend in URL_PASSWORD_BACKENDS,
        )
        self._ready[backend] = ready
        return ready

    def redacted(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "protected": self.protected,
            "source": self.source,
            "overrides": list(self.overrides),
            "backends": redact_settings(self.backends),
        }


@dataclass
class ConfigFile:
    """The config file as loaded; ``exists`` is False when qctl runs on built-in defaults."""

    path: Path
    exists: bool
    current_context: str | None
    contexts: dict[str, Context]

    @classmethod
    def load(cls, path: Path | None = None) -> ConfigFile:
        path = path or default_config_path()
        if not path.exists():
            return cls(path=path, exists=False, current_context=None, contexts={})
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {path}: {exc.strerror}", "check its permissions"
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: byte {exc.start + 1} is not UTF-8 text", "save the file as UTF-8"
            ) from None
        import yaml  # only with a config file: its import alone takes tens of ms

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"{where}: {problem}", "fix the YAML syntax") from exc
        return cls.from_dict(path, data)

    @classmethod
    def from_dict(cls, path: Path, data: Any) -> ConfigFile:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the config must be a mapping", "see `qctl context --help`")
        unknown = set(data) - {"current_context", "contexts"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown top-level key {sorted(unknown)[0]!r}",
                "allowed keys are current_context and contexts",
            )
        raw_contexts = data.get("contexts") or {}
        if not isinstance(raw_contexts, Mapping):
            raise ConfigError(f"{path}: contexts must be a mapping of name to settings")
        contexts: dict[str, Context] = {}
        for name, body in raw_contexts.items():
            contexts[str(name)] = _parse_context(path, str(name), body)
        current = data.get("current_context")
        return cls(
            path=path,
            exists=True,
            current_context=str(current) if current is not None else None,
            contexts=contexts,
        )

    def names(self) -> list[str]:
        """Context names, including the built-in ``local`` when the file does not define it."""
        names = list(self.contexts)
        if LOCAL_CONTEXT not in self.contexts:
            names.append(LOCAL_CONTEXT)
        return names

    def get(self, name: str) -> Context:
        if name in self.contexts:
            return self.contexts[name]
        if name == LOCAL_CONTEXT:
            return Context(name=LOCAL_CONTEXT, backends=copy.deepcopy(LOCAL_DEFAULTS))
        raise NotFoundError(
            f"no context named {name!r}",
            f"known contexts: {', '.join(self.names())}; create one with `qctl context set`",
        )

    def selected_name(self, override: str | None, environ: Mapping[str, str]) -> str:
        """--context wins, then $QCTL_CONTEXT, then current_context, then ``local``."""
        return override or environ.get("QCTL_CONTEXT") or self.current_context or LOCAL_CONTEXT

    def resolve(
        self, override: str | None = None, environ: Mapping[str, str] | None = None
    ) -> ResolvedContext:
        env = os.environ if environ is None else environ
        name = self.selected_name(override, env)
        ctx = self.get(name)
        source = str(self.path) if name in self.contexts else "built-in"
        backends = expand_vars(ctx.backends, f"context {name!r}", env)
        overrides: list[str] = []
        for var, (backend, key) in ENV_OVERRIDES.items():
            if env.get(var):
                backends.setdefault(backend, {})[key] = env[var]
                overrides.append(f"{backend}.{key} from ${var}")
        for settings in backends.values():
            SECRETS.collect(settings)
        return ResolvedContext(
            name=name,
            backends=backends,
            protected=ctx.protected,
            source=source,
            overrides=overrides,
            base_dir=self.path.parent if name in self.contexts else None,
        )

    def to_yaml(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.current_context:
            data["current_context"] = self.current_context
        data["contexts"] = {name: ctx.to_yaml() for name, ctx in self.contexts.items()}
        return data

    def save(self) -> None:
        """Write the file atomically, readable by its owner only (it may hold secrets)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        import yaml

        text = yaml.safe_dump(self.to_yaml(), sort_keys=False, default_flow_style=False)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, self.path)
        self.exists = True


def _parse_context(path: Path, name: str, body: Any) -> Context:
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"{path}: invalid context name {name!r}",
            "use letters, digits, '.', '_', '-' and '@'",
        )
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{path}: context {name!r} must be a mapping")
    ctx = Context(name=name)
    for raw_key, value in body.items():
        key = str(raw_key)
        if key == "protected":
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: context {name!r}: protected must be true or false")
            ctx.protected = value
        elif key == "description":
            ctx.description = None if value is None else str(value)
        elif isinstance(value, Mapping):
            ctx.backends[key] = dict(value)
        else:
            raise ConfigError(
                f"{path}: context {name!r}: {key!r} must be a mapping of backend settings",
                "e.g. kafka: {bootstrap_servers: host:9092}",
            )
    return ctx


def validate_context_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"invalid context name {name!r}", "use letters, digits, '.', '_', '-' and '@'"
        )
    return name


def parse_assignments(items: Iterable[str], what: str) -> dict[str, str]:
    """Parse repeated ``key=value`` options."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r} is not key=value", f"write it as {what} key=value")
        out[key.strip()] = value
    return out


def world_readable(path: Path) -> bool:
    """True when group or others have any access to ``path`` (mode & 0o077)."""
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False
