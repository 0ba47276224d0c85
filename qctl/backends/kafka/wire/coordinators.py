"""Requests to consumer-group coordinators over qctl's own wire client.

librdkafka's admin calls that go to group coordinators can take the whole process down
while the cluster fails over or is out: a segmentation fault when a coordinator answers
OffsetFetch with a coordinator error (librdkafka issue #5040), and an abort on the
assertion ``eonce->refcnt > 0`` when DescribeGroups or ListGroups requests time out
(librdkafka issue #4605). The lag view refreshes both every few seconds, so an outage of
a few seconds was enough. These requests are therefore sent here, on plain sockets, with
what Kafka documents for those errors: find the coordinator again and retry, within the
timeout.

This module holds what the requests share: one connection per broker for all the groups
of a call, the coordinator lookup (pipelined for many groups) and the retry loop; each
connection picks request versions from the ApiVersions answer it got when it connected
(``Connection.version``). ``committed`` (OffsetFetch) and ``group_reads`` (ListGroups,
DescribeGroups, ConsumerGroupDescribe) build on it.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from qctl.backends.kafka.wire.admin import FIND_COORDINATOR, Coordinator
from qctl.backends.kafka.wire.codec import (
    WireAuthError,
    WireError,
    WireRefused,
    WireUnsupported,
    error_name,
)
from qctl.backends.kafka.wire.config import PLAINTEXT, WireConfig
from qctl.backends.kafka.wire.connection import Connection
from qctl.errors import AuthenticationError, OperationTimeout, QctlError, UnreachableError

__all__ = ["CoordinatedWire", "GroupRefused", "WireUnsupported"]

log = logging.getLogger(__name__)

#: Coordinator errors after which asking the (new) coordinator again can succeed.
RETRIABLE = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
_RETRY_PAUSE = 0.2

Address = tuple[str, int]
T = TypeVar("T")


class GroupRefused(Exception):
    """A coordinator answered a group's request with a final (not retriable) error."""

    def __init__(self, code: int) -> None:
        super().__init__(error_name(code))
        self.code = code


class CoordinatedWire:
    """Connections to a cluster's brokers for one call, bounded by one timeout."""

    def __init__(
        self,
        addresses: list[Address],
        bootstrap: str,
        timeout: float,
        config: WireConfig = PLAINTEXT,
    ) -> None:
        self.addresses = addresses
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.config = config
        self.deadline = time.monotonic() + timeout
        self._probes: dict[Address, Connection] = {}
        #: The node id of each coordinator found, by address.
        self.nodes: dict[Address, int] = {}
        #: Why the last broker asked for a coordinator did not answer.
        self.unanswered = "no broker answered"

    def close(self) -> None:
        for probe in self._probes.values():
            probe.sock.close()
        self._probes.clear()

    # -- coordinators ----------------------------------------------------------------------
    def coordinators(self, ids: list[str]) -> dict[Address, list[str]]:
        """The groups whose coordinator the first broker to answer named, by coordinator:
        one pipelined round trip for all of them. Groups left out go the one-group way."""
        for answers in self._lookups(ids, "pipelined FindCoordinator"):
            by_coordinator: dict[Address, list[str]] = {}
            for group, found in zip(ids, answers, strict=True):
                if found.error_code == 0:
                    self.nodes[(found.host, found.port)] = found.node_id
                    by_coordinator.setdefault((found.host, found.port), []).append(group)
            return by_coordinator
        return {}

    def _lookups(self, ids: list[str], what: str) -> Iterator[list[Coordinator]]:
        """FindCoordinator for ``ids``, answered by one broker after another (the next
        when the caller asks for more): a broker that fails is dropped and skipped."""
        for address in self.addresses:
            try:
                probe = self.probe(address)
                version = probe.version(FIND_COORDINATOR, 1, 4)
                answers = probe.find_coordinators(ids, version)
            except WireUnsupported:
                raise
            except WireError as exc:
                self.drop(address)
                self.unanswered = f"{address[0]}:{address[1]}: {exc}"
                log.debug("%s at %s:%s: %s", what, *address, exc)
                continue
            yield answers

    def per_group(self, group_id: str, ask: Callable[[Connection, Address], T], what: str) -> T:
        """``ask`` the group's coordinator, finding it again and retrying while the answer
        is a coordinator error (``GroupRefused`` with a ``RETRIABLE`` code) or no broker
        answers, until the deadline. ``what`` names the request in errors."""
        last = "no broker answered"
        reached = False
        while True:
            coordinator, why = self._find(group_id)
            reached = reached or coordinator is not None or why != "unreachable"
            if coordinator is not None:
                address = (coordinator.host, coordinator.port)
                try:
                    return ask(self.probe(address), address)
                except WireUnsupported:
                    raise
                except WireError as exc:
                    self.drop(address)
                    last = f"coordinator {coordinator.host}:{coordinator.port}: {exc}"
                except GroupRefused as exc:
                    if exc.code not in RETRIABLE:
                        raise group_error(group_id, exc.code, self.bootstrap, what) from None
                    last = str(exc)
                    log.debug("group %s: %s, asking again", group_id, last)
            elif why != "unreachable":
                last = why
            else:
                last = self.unanswered
            if not self.wait_to_retry():
                if not reached:
                    raise UnreachableError(
                        f"kafka at {self.bootstrap} is unreachable: {last}",
                        "check bootstrap_servers and that the cluster is running",
                    )
                raise OperationTimeout(
                    f"kafka at {self.bootstrap} did not answer the {what} of group "
                    f"{group_id!r} within {self.timeout:g}s ({last})",
                    "raise --timeout or check the cluster's health",
                )

    def wait_to_retry(self) -> bool:
        """Pause before asking again; False at once when the deadline leaves no time."""
        if time.monotonic() >= self.deadline - _RETRY_PAUSE:
            return False
        time.sleep(_RETRY_PAUSE)
        return True

    def _find(self, group_id: str) -> tuple[Coordinator | None, str]:
        """The group's coordinator, or None and why ("unreachable" if no broker answered)."""
        why = "unreachable"
        for [found] in self._lookups([group_id], "FindCoordinator"):
            if found.error_code == 0:
                self.nodes[(found.host, found.port)] = found.node_id
                return found, ""
            why = f"{error_name(found.error_code)} {found.error_message or ''}".strip()
            if found.error_code not in RETRIABLE:
                raise group_error(group_id, found.error_code, self.bootstrap, "coordinator")
        return None, why

    # -- connections -----------------------------------------------------------------------
    def probe(self, address: Address) -> Connection:
        probe = self._probes.get(address)
        if probe is None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise WireError("timed out")
            try:
                probe = Connection(*address, left, self.config)
            except WireAuthError as exc:
                raise WireRefused(str(exc)) from None
            except WireError as exc:
                if _tls_refusal(exc.__cause__):
                    raise WireRefused(str(exc)) from None
                raise
            self._probes[address] = probe
        return probe

    def drop(self, address: Address) -> None:
        probe = self._probes.pop(address, None)
        if probe is not None:
            probe.sock.close()


def _tls_refusal(cause: BaseException | None) -> bool:
    """Whether a failed connect was the TLS handshake refusing (a certificate, a
    protocol), not a connection that dropped while a broker restarts."""
    if not isinstance(cause, ssl.SSLError):
        return False
    return not isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError)


def group_error(group_id: str, code: int, bootstrap: str, what: str) -> QctlError:
    if code == 30:
        return AuthenticationError(
            f"kafka at {bootstrap} refused access to group {group_id!r}",
            "check the ACLs of the user",
        )
    return QctlError(
        f"kafka at {bootstrap} refused the {what} of group {group_id!r}: {error_name(code)}"
    )
