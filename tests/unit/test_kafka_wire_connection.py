"""``Connection`` against a scripted broker: what goes out, in which order, and when.

The broker here speaks just enough Kafka (ApiVersions v3, SaslHandshake v1, PLAIN over
SaslAuthenticate v1 with a session lifetime, and an echo for anything else) to record
every request header a connection sends: the client id in each, ApiVersions before the
SASL login, and the re-authentication of KIP-368 at 90% of the session, never with a
request in flight. tests/integration/test_connection_contract.py does the same against
a real broker.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from qctl.backends.kafka.wire.auth import SaslCredentials
from qctl.backends.kafka.wire.codec import WireAuthError, WireUnsupported, uvarint
from qctl.backends.kafka.wire.config import WireConfig
from qctl.backends.kafka.wire.connection import Connection

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE, ECHO = 18, 17, 36, 3


@dataclass
class Seen:
    api_key: int
    client_id: str
    connection: int
    at: float
    body: bytes


@dataclass
class ScriptedBroker:
    """One listening socket; every connection served on its own thread."""

    lifetime_ms: int = 0
    password: str = "pw"
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def keys(self) -> list[int]:
        return [s.api_key for s in self.seen]

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            while True:
                head = _recv(conn, 4)
                if head is None:
                    return
                frame = _recv(conn, struct.unpack(">i", head)[0])
                if frame is None:
                    return
                key, _version, correlation, size = struct.unpack(">hhih", frame[:10])
                client = frame[10 : 10 + size].decode()
                body = frame[10 + size :]
                self.seen.append(Seen(key, client, number, time.monotonic(), body))
                answer = struct.pack(">i", correlation) + self._answer(key, body)
                conn.sendall(struct.pack(">i", len(answer)) + answer)

    def _answer(self, key: int, body: bytes) -> bytes:
        if key == API_VERSIONS:
            keys = [(ECHO, 0, 12), (SASL_HANDSHAKE, 0, 1), (SASL_AUTHENTICATE, 0, 1)]
            out = struct.pack(">h", 0) + uvarint(len(keys) + 1)
            for api, low, high in keys:
                out += struct.pack(">hhh", api, low, high) + uvarint(0)
            return out + struct.pack(">i", 0) + uvarint(0)
        if key == SASL_HANDSHAKE:
            return struct.pack(">hih", 0, 1, 5) + b"PLAIN"
        if key == SASL_AUTHENTICATE:
            (size,) = struct.unpack(">i", body[:4])
            _, _user, password = body[4 : 4 + size].split(b"\0")
            code = 0 if password.decode() == self.password else 58
            return struct.pack(">hhiq", code, -1, 0, self.lifetime_ms)
        return struct.pack(">i", len(body)) + body[:16]

    def close(self) -> None:
        self.server.close()


def _recv(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@pytest.fixture
def broker() -> Iterator[ScriptedBroker]:
    made = ScriptedBroker()
    yield made
    made.close()


def sleep_until(when: float) -> None:
    time.sleep(max(when - time.monotonic(), 0))


def plain(client_id: str = "qctl", password: str = "pw") -> WireConfig:
    return WireConfig(sasl=SaslCredentials("PLAIN", "u", password), client_id=client_id)


def echo(correlation: int, size: int = 8) -> bytes:
    return struct.pack(">hhih", ECHO, 0, correlation, 4) + b"qctl" + b"x" * size


def test_apiversions_comes_first_then_the_login(broker: ScriptedBroker) -> None:
    with Connection("127.0.0.1", broker.port, 5, plain()) as conn:
        assert conn.version(ECHO, 0, 20) == 12
        with pytest.raises(WireUnsupported, match="API 1 v4-v4"):
            conn.version(1, 4, 4)
    assert broker.keys() == [API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE]
    # KIP-511: the software name and version in ApiVersions v3.
    assert broker.seen[0].body.startswith(b"\x00\x05qctl")


def test_every_request_carries_the_contexts_client_id(broker: ScriptedBroker) -> None:
    """``client.id`` reaches the broker in every header (the encoders write "qctl"),
    including the login and a frame too large to be copied around the new header."""
    with Connection("127.0.0.1", broker.port, 5, plain("billing-ops")) as conn:
        conn.request(echo(1))
        conn.pipeline([echo, echo])
        big = 200_000
        answer = conn.receive(conn.send(lambda c: echo(c, big)))
        assert struct.unpack(">i", answer[4:8])[0] == big
    assert {s.client_id for s in broker.seen} == {"billing-ops"}
    assert len(broker.seen) == 7
    assert broker.seen[-1].body == b"x" * big


def test_qctl_is_the_default_client_id(broker: ScriptedBroker) -> None:
    with Connection("127.0.0.1", broker.port, 5, None) as conn:
        conn.request(echo(1))
    assert [s.client_id for s in broker.seen] == ["qctl", "qctl"]


def test_a_refused_login_is_an_auth_error(broker: ScriptedBroker) -> None:
    with pytest.raises(WireAuthError, match="refused the PLAIN login of 'u'"):
        Connection("127.0.0.1", broker.port, 5, plain(password="wrong"))


def test_the_session_is_renewed_at_90_percent_of_its_lifetime(broker: ScriptedBroker) -> None:
    broker.lifetime_ms = 4000
    with Connection("127.0.0.1", broker.port, 10, plain()) as conn:
        start = time.monotonic()
        conn.request(echo(1))  # well within the session: no login
        sleep_until(start + 2.4)
        conn.request(echo(2))  # 60%: still none
        sleep_until(start + 3.7)
        conn.request(echo(3))  # past 90% (3.6 s): log in again first, same connection
    keys = broker.keys()
    assert keys == [
        API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE,
        ECHO, ECHO,
        SASL_HANDSHAKE, SASL_AUTHENTICATE, ECHO,
    ]  # fmt: skip
    assert {s.connection for s in broker.seen} == {1}
    renewed = broker.seen[5].at - start
    assert 3.6 <= renewed < 4.0


def test_no_renewal_while_a_request_is_in_flight(broker: ScriptedBroker) -> None:
    broker.lifetime_ms = 4000
    with Connection("127.0.0.1", broker.port, 10, plain()) as conn:
        start = time.monotonic()
        first = conn.send(echo)
        sleep_until(start + 3.7)  # past 90%, but an answer is still owed
        second = conn.send(echo)
        assert conn.inflight == 2
        conn.receive(first)
        conn.receive(second)
        assert conn.inflight == 0
        conn.request(echo(9))  # nothing in flight now: the login goes first
    assert broker.keys()[3:] == [ECHO, ECHO, SASL_HANDSHAKE, SASL_AUTHENTICATE, ECHO]


def test_an_idle_connection_past_its_session_connects_again(broker: ScriptedBroker) -> None:
    broker.lifetime_ms = 200
    with Connection("127.0.0.1", broker.port, 10, plain()) as conn:
        time.sleep(0.25)
        conn.request(echo(1))
    assert broker.connections == 2
    assert broker.keys() == [
        API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE,
        API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE, ECHO,
    ]  # fmt: skip


def test_no_lifetime_no_renewal(broker: ScriptedBroker) -> None:
    with Connection("127.0.0.1", broker.port, 10, plain()) as conn:
        conn.request(echo(1))
        time.sleep(0.1)
        conn.request(echo(2))
    assert broker.keys().count(SASL_AUTHENTICATE) == 1


def test_socket_options_are_set(broker: ScriptedBroker) -> None:
    from qctl.backends.kafka.wire.config import SocketOptions

    config = WireConfig(sockets=SocketOptions(keepalive=True, nodelay=False, receive_buffer=65536))
    with Connection("127.0.0.1", broker.port, 5, config) as conn:
        sock = conn.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 65536
    with Connection("127.0.0.1", broker.port, 5, None) as conn:
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_socket_timeout_bounds_each_request() -> None:
    """socket.timeout.ms: a broker that never answers fails the request after it, not
    after the whole deadline."""
    from qctl.backends.kafka.wire.codec import WireError
    from qctl.backends.kafka.wire.config import SocketOptions

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    config = WireConfig(sockets=SocketOptions(api_versions_timeout=0.3))
    start = time.monotonic()
    with pytest.raises(WireError):
        Connection("127.0.0.1", server.getsockname()[1], 30, config)
    assert time.monotonic() - start < 2
    server.close()
