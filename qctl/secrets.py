"""Secret sources: a password read from a file or printed by a command.

A context may hold ``KEY_file: PATH`` or ``KEY_command: CMD`` in place of a secret
``KEY`` (``sasl.password_file``, ``management_password_command``, ...), in the spirit of
git's credential helpers, so the config file never stores the secret itself. A backend
section with a ``url`` (RabbitMQ) may also hold ``password``, ``password_file`` or
``password_command``: the password then goes into the URL's user info.

Sources are resolved only when a backend is about to connect
(:meth:`qctl.config.ResolvedContext.settings_for`), never by ``qctl context show``,
``--help`` or completion; the resolved value replaces the source key, so backends
receive plain settings, and is registered with :data:`qctl.config.SECRETS` so no output
line can carry it. Errors name the context and the key, never the command's output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from qctl.errors import ConfigError

#: How long a ``*_command`` may run before qctl gives up on it.
COMMAND_TIMEOUT = 10.0

#: Suffixes that turn a secret key into a source of that secret.
SOURCE_SUFFIXES = ("_file", "_command")

#: In a section whose backend is in URL_PASSWORD_BACKENDS, this key sets the ``url``'s password.
URL_PASSWORD_KEY = "password"
URL_PASSWORD_BACKENDS = frozenset({"rabbitmq"})

Warn = Callable[[str], None]


def source_of(key: str) -> tuple[str, str] | None:
    """``("sasl.password", "_command")`` for ``sasl.password_command``; None otherwise."""
    from qctl.config import is_secret_key

    for suffix in SOURCE_SUFFIXES:
        if key.endswith(suffix):
            target = key[: -len(suffix)]
            if is_secret_key(target):
                return target, suffix
    return None


def resolve_sources(
    settings: Mapping[str, Any],
    where: str,
    base_dir: Path | None = None,
    warn: Warn | None = None,
    url_password: bool = False,
) -> dict[str, Any]:
    """A copy of one backend section with every secret source replaced by its value.

    ``where`` names the section for errors, e.g. ``context 'prod' rabbitmq``;
    ``url_password`` makes ``password`` (and its sources) the password of ``url``.
    """
    from qctl.config import SECRETS

    out = dict(settings)
    for key in list(out):
        found = source_of(key)
        if found is None:
            continue
        target, suffix = found
        if target in out:
            raise ConfigError(
                f"{where}: both {target} and {key} are set",
                f"keep only one of them in the {where.rsplit(' ', 1)[-1]} section",
            )
        spec = out.pop(key)
        label = f"{where}.{key}"
        if suffix == "_file":
            value = read_secret_file(spec, label, base_dir, warn)
        else:
            value = run_secret_command(spec, label)
        SECRETS.add(value)
        SECRETS.add(quote(value, safe=""))
        out[target] = value
    if url_password and URL_PASSWORD_KEY in out:
        password = out.pop(URL_PASSWORD_KEY)
        if not isinstance(password, str) or not password:
            raise ConfigError(f"{where}.password must be a non-empty string")
        SECRETS.add(password)
        SECRETS.add(quote(password, safe=""))
        out["url"] = url_with_password(out.get("url"), password, where)
    return out


def url_with_password(url: Any, password: str, where: str) -> str:
    """``url`` with ``password`` (percent-encoded) in its user info."""
    if not isinstance(url, str) or not url:
        raise ConfigError(
            f"{where}: a password source needs a url with a user name",
            "e.g. url: amqps://ops@rabbit.example.com:5671/vhost",
        )
    try:
        parts = urlsplit(url)
        user = parts.username
        existing = parts.password
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid url: {exc}") from None
    if not user:
        raise ConfigError(
            f"{where}: the url has no user name for the password",
            "write it as scheme://USER@host:port/vhost",
        )
    if existing is not None:
        raise ConfigError(
            f"{where}: the url already holds a password",
            "remove it from the url, or remove the password setting",
        )
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def read_secret_file(spec: Any, label: str, base_dir: Path | None, warn: Warn | None) -> str:
    """The first line of the file, stripped; relative paths start at the config's folder."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{label} must be a file path", f"e.g. {label.rsplit('.', 1)[-1]}: ~/x")
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot read {path}: {exc.strerror}",
            "check that the file exists and is readable by you",
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{label}: {path} is not a regular file")
        data = os.read(fd, 1 << 16)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if warn is not None and mode & 0o077:
        warn(f"secret file {path} is accessible by other users; run `chmod 600 {path}`")
    return _first_line(data, label, f"{path} is empty")


def run_secret_command(spec: Any, label: str, timeout: float | None = None) -> str:
    """Run ``spec`` (a shell command line, or an argv list) and return its first line.

    The command's stdout and stderr are captured and never shown: stdout holds the
    secret, and stderr may echo it. Its process group is killed on timeout, so a
    command that forks cannot keep qctl waiting.
    """
    limit = COMMAND_TIMEOUT if timeout is None else timeout
    argv: str | Sequence[str]
    if isinstance(spec, str) and spec.strip():
        argv, shell = spec, True
    elif isinstance(spec, list) and spec and all(isinstance(a, str) for a in spec):
        argv, shell = [str(a) for a in spec], False
    else:
        raise ConfigError(
            f"{label} must be a command line or a list of arguments",
            "e.g. password_command: pass show rabbitmq/prod",
        )
    try:
        proc = subprocess.Popen(
            argv,
            shell=shell,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise ConfigError(f"{label} could not start: {exc.strerror}") from None
    try:
        out, _err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ConfigError(
            f"{label} did not finish within {limit:g}s",
            "check that it runs without a prompt (e.g. unlock your password store first)",
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        raise ConfigError(
            f"{label} failed with exit code {proc.returncode}",
            "run the command yourself to see why",
        )
    return _first_line(out, label, "the command printed nothing")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    # Grandchildren that escaped the group may still hold the pipes; do not wait on them.
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)


def _first_line(data: bytes, label: str, empty: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: the secret is not UTF-8 text") from None
    line = text.splitlines()[0].strip() if text.strip() else ""
    if not line:
        raise ConfigError(f"{label}: {empty}", "the first line must hold the secret")
    return line
