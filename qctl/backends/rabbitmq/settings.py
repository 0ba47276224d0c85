"""The ``rabbitmq`` section of a context: AMQP URL, management URL, TLS files.

Kept free of pika and httpx so it can be unit-tested and imported cheaply.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from qctl import security
from qctl.config import redact_url
from qctl.errors import ConfigError

KNOWN_KEYS = {
    "url",
    "management_url",
    "management_username",
    "management_password",
    "ca_file",
    "cert_file",
    "key_file",
    "key_password",
    "verify",
    "insecure",
    "dlq_patterns",
}


@dataclass(frozen=True)
class RabbitSettings:
    url: str
    host: str
    port: int
    tls: bool
    username: str
    password: str
    vhost: str
    management_url: str
    management_username: str
    management_password: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    key_password: str | None
    verify: bool

    @property
    def external(self) -> bool:
        """TLS with a client certificate and no password: log in with EXTERNAL."""
        return self.tls and bool(self.cert_file) and not self.password

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def ssl_context(self) -> ssl.SSLContext:
        """Verification on unless the user explicitly turned it off."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file, self.key_password)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def parse_settings(settings: Mapping[str, Any]) -> RabbitSettings:
    unknown = set(settings) - KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"unknown rabbitmq setting {sorted(unknown)[0]!r}",
            f"known settings: {', '.join(sorted(KNOWN_KEYS))}",
        )
    url = str(settings.get("url") or "amqp://guest:guest@localhost:5672/")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid rabbitmq url {redact_url(url)!r}: {exc}") from exc
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigError(
            f"rabbitmq url must start with amqp:// or amqps://, not {parts.scheme}://",
            "e.g. amqps://user:${RABBITMQ_PASSWORD}@host:5671/vhost",
        )
    tls = parts.scheme == "amqps"
    host = parts.hostname or "localhost"
    username = unquote(parts.username) if parts.username is not None else "guest"
    password = unquote(parts.password) if parts.password is not None else "guest"
    if tls and settings.get("cert_file") and parts.password is None:
        # A client certificate and no password in the URL: EXTERNAL, the user is the
        # certificate's CN; the management API still needs management_* credentials.
        password = ""
    # The URL path is the vhost; an empty path means the default vhost "/".
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    default_mgmt = f"{'https' if tls else 'http'}://{host}:{15671 if tls else 15672}"
    management_url = str(settings.get("management_url") or default_mgmt)
    insecure = security.is_insecure(settings, "rabbitmq")
    verify = security.flag(settings, "verify", "rabbitmq", default=True) and not insecure
    if not verify and not insecure:
        raise security.refuse_silent_off("rabbitmq", "verify: false")
    return RabbitSettings(
        url=url,
        host=host,
        port=port or (5671 if tls else 5672),
        tls=tls,
        username=username,
        password=password,
        vhost=vhost,
        management_url=management_url,
        management_username=str(settings.get("management_username") or username),
        management_password=str(settings.get("management_password") or password),
        ca_file=settings.get("ca_file"),
        cert_file=settings.get("cert_file"),
        key_file=settings.get("key_file"),
        key_password=settings.get("key_password"),
        verify=bool(verify),
    )
