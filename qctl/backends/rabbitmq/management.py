"""A small client for the RabbitMQ management HTTP API (httpx).

AMQP cannot read policies, statistics, definitions or the true arguments of a queue, so
the backend uses the management API for those. Every request is bounded by the
context's timeout and every failure becomes a qctl error with an exit code.
"""

from __future__ import annotations

import ssl
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from qctl.errors import (
    AuthenticationError,
    NotFoundError,
    OperationTimeout,
    QctlError,
    UnreachableError,
)

if TYPE_CHECKING:
    import httpx


def import_httpx() -> Any:
    """httpx, imported without its command-line client.

    ``httpx/__init__`` imports ``httpx._main`` (the ``httpx`` CLI, which pulls in rich and
    pygments) when they are installed, as they are next to textual: about 0.1 s of every
    qctl command that talks to RabbitMQ. A ``None`` entry in ``sys.modules`` makes that
    one optional import fail, which httpx handles; the entry is removed afterwards.
    """
    if "httpx" in sys.modules:
        return sys.modules["httpx"]
    blocked = "httpx._main" not in sys.modules
    if blocked:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx
    finally:
        if blocked and sys.modules.get("httpx._main") is None:
            del sys.modules["httpx._main"]
    return httpx


def quote_segment(value: str) -> str:
    """Quote a vhost or object name as one path segment (``/`` becomes ``%2F``)."""
    return quote(value, safe="")


class ManagementAPI:
    """GET/PUT/DELETE against ``/api``, JSON in and out."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        httpx = import_httpx()

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if urlsplit(self.base_url).scheme == "http":
            # No TLS, nothing to verify: spares loading the system's CA bundle (0.1 s).
            verify = False
        self._client = httpx.Client(
            base_url=self.base_url + "/api",
            auth=(username, password),
            timeout=httpx.Timeout(timeout),
            verify=verify,
            headers={"content-type": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        httpx = import_httpx()

        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise OperationTimeout(
                f"RabbitMQ management API at {self.base_url} did not answer within "
                f"{self.timeout:g}s",
                "raise --timeout or check the node's health",
            ) from exc
        except httpx.ConnectError as exc:
            cause = _tls_cause(exc, urlsplit(self.base_url).hostname or "")
            if cause is not None:
                raise AuthenticationError(
                    f"TLS handshake with the RabbitMQ management API at {self.base_url} "
                    f"failed: {cause[0]}",
                    cause[1],
                ) from exc
            if _is_tls_failure(exc):
                raise AuthenticationError(
                    f"TLS handshake with the RabbitMQ management API at {self.base_url} "
                    f"failed: {exc}",
                    "check ca_file and the server certificate",
                ) from exc
            raise UnreachableError(
                f"RabbitMQ management API at {self.base_url} is unreachable: {exc}",
                "check management_url (`qctl context show`) and that the management plugin "
                "is enabled",
            ) from exc
        except httpx.HTTPError as exc:
            raise UnreachableError(
                f"RabbitMQ management API at {self.base_url} failed: {exc}"
            ) from exc
        return self._decode(method, path, response)

    def _decode(self, method: str, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 401 and "login failed" not in _reason(response).lower():
            # RabbitMQ answers 401 also for a known user lacking a tag ("Not
            # administrator user"): that is a permission problem, not bad credentials.
            raise AuthenticationError(
                f"RabbitMQ management API at {self.base_url}: access refused for "
                f"{method} {path} (HTTP 401, missing permission): {_reason(response)}",
                "grant the user configure/write/read permissions on the vhost "
                "(rabbitmqctl set_permissions) or the tag it needs (set_user_tags)",
            )
        if status == 401:
            raise AuthenticationError(
                f"RabbitMQ management API at {self.base_url} refused the credentials "
                f"(HTTP 401, wrong user name or password) for {method} {path}",
                "check the user name and password (management_username/management_password)",
            )
        if status == 403:
            raise AuthenticationError(
                f"RabbitMQ management API at {self.base_url}: access refused for "
                f"{method} {path} (HTTP 403, missing permission): {_reason(response)}",
                "grant the user configure/write/read permissions on the vhost "
                "(rabbitmqctl set_permissions) or the management tag",
            )
        if status == 404:
            raise NotFoundError(f"{path} not found on the RabbitMQ management API")
        if status >= 400:
            reason = _reason(response)
            raise QctlError(
                f"RabbitMQ management API {method} {path} failed (HTTP {status}): {reason}"
            )
        if status == 204 or not response.content:
            return None
        return response.json()


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("reason") or body.get("error") or body)
    return str(body)


def _tls_cause(exc: BaseException, host: str) -> tuple[str, str] | None:
    """(cause, fix) for an ssl error inside httpx's ConnectError."""
    from qctl.security import explain

    current: BaseException | None = exc
    for _ in range(6):
        if current is None:
            return None
        if isinstance(current, ssl.SSLError):
            return explain(current, host)
        current = current.__cause__ or current.__context__
    return None


def _is_tls_failure(exc: Exception) -> bool:
    text = str(exc).lower()
    return "certificate" in text or "ssl" in text or "tls" in text
