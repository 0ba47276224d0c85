"""Committed offsets of consumer groups, fetched with qctl's own wire client.

Why not ``AdminClient.list_consumer_group_offsets``: librdkafka (still in the 2.16 that
confluent-kafka 2.16 bundles) crashes the whole process with a segmentation fault when the
group coordinator answers OffsetFetch with a coordinator error (librdkafka issue #5040:
the admin client has no consumer group to hand the "find the coordinator again" request
to). A coordinator answers exactly that while a fresh cluster creates
``__consumer_offsets``, and for a few seconds after the broker that coordinated a group
died — so `qctl lag` (and the live view with it), `qctl offsets`, `dlq` and `replay`
died with SIGSEGV in the middle of a failover. Here those answers mean what Kafka
documents: find the coordinator again and retry, within the timeout.

One connection per broker serves all groups of a call; the requests are OffsetFetch v5
(non-flexible, every partition the group committed: what Kafka's own tools ask).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from qctl.backends.kafka.wire import (
    FIND_COORDINATOR,
    OFFSET_FETCH,
    Coordinator,
    Probe,
    WireAuthError,
    WireError,
    error_name,
)

if TYPE_CHECKING:
    from qctl.backends.kafka.sasl import SaslCredentials
from qctl.errors import AuthenticationError, OperationTimeout, QctlError, UnreachableError

log = logging.getLogger(__name__)

#: Coordinator errors after which asking the (new) coordinator again can succeed.
RETRIABLE = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
_OFFSET_FETCH_VERSION = 5
_RETRY_PAUSE = 0.2


class WireUnsupported(Exception):
    """The cluster does not speak the versions used here; the caller uses the admin client."""


Offsets = dict[tuple[str, int], int | None]


class CommittedOffsetsFetcher:
    """Fetch the committed offsets of several groups within one timeout."""

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        bootstrap: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        sasl: SaslCredentials | None = None,
    ) -> None:
        self.addresses = addresses
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.sasl = sasl
        self.deadline = time.monotonic() + timeout
        self._probes: dict[tuple[str, int], Probe] = {}
        self._find_version: dict[tuple[str, int], int] = {}
        self._fetch_checked: set[tuple[str, int]] = set()

    def fetch(self, group_ids: Iterable[str]) -> dict[str, Offsets]:
        ids = list(group_ids)
        try:
            settled = self._pipelined(ids) if len(ids) > 1 else {}
            # Whatever the pipelined pass did not settle (an error, a moving coordinator)
            # goes through the one-group path with its retries and error reporting.
            return {
                group: settled[group] if group in settled else self._group(group) for group in ids
            }
        finally:
            for probe in self._probes.values():
                probe.sock.close()
            self._probes.clear()

    # -- all groups in a few round trips -----------------------------------------------------
    def _pipelined(self, ids: list[str]) -> dict[str, Offsets]:
        """The offsets of every group whose coordinator answered cleanly, with the lookups
        and the fetches pipelined per connection: a hundred groups in a few round trips
        instead of two hundred. Anything else is left out, not raised."""
        found: dict[str, Coordinator] = {}
        for address in self.addresses:
            try:
                probe = self._probe(address)
                version = self._coordinator_version(probe, address)
                answers = probe.find_coordinators(ids, version)
            except WireError as exc:
                self._drop(address)
                log.debug("pipelined FindCoordinator at %s:%s: %s", *address, exc)
                continue
            found = {g: c for g, c in zip(ids, answers, strict=True) if c.error_code == 0}
            break
        by_coordinator: dict[tuple[str, int], list[str]] = {}
        for group, coordinator in found.items():
            by_coordinator.setdefault((coordinator.host, coordinator.port), []).append(group)
        settled: dict[str, Offsets] = {}
        for address, groups in by_coordinator.items():
            try:
                probe = self._probe(address)
                self._check_version(probe, address)
                results = probe.offset_fetches(groups)
            except WireError as exc:
                self._drop(address)
                log.debug("pipelined OffsetFetch at %s:%s: %s", *address, exc)
                continue
            for group, result in zip(groups, results, strict=True):
                if result.error_code == 0:
                    settled[group] = _offsets(group, result.partitions)
        return settled

    # -- one group -------------------------------------------------------------------------
    def _group(self, group_id: str) -> Offsets:
        last = "no broker answered"
        reached = False
        while True:
            coordinator, why = self._find(group_id)
            reached = reached or coordinator is not None or why != "unreachable"
            if coordinator is not None:
                address = (coordinator.host, coordinator.port)
                try:
                    probe = self._probe(address)
                    self._check_version(probe, address)
                    result = probe.offset_fetch(group_id)
                except WireError as exc:
                    self._drop(address)
                    last = f"coordinator {coordinator.host}:{coordinator.port}: {exc}"
                else:
                    if result.error_code == 0:
                        return _offsets(group_id, result.partitions)
                    last = error_name(result.error_code)
                    if result.error_code not in RETRIABLE:
                        raise _group_error(group_id, result.error_code, self.bootstrap)
                    log.debug("group %s: %s, asking again", group_id, last)
            elif why != "unreachable":
                last = why
            if time.monotonic() >= self.deadline - _RETRY_PAUSE:
                if not reached:
                    raise UnreachableError(
                        f"kafka at {self.bootstrap} is unreachable: {last}",
                        "check bootstrap_servers and that the cluster is running",
                    )
                raise OperationTimeout(
                    f"kafka at {self.bootstrap} did not answer the offsets of group "
                    f"{group_id!r} within {self.timeout:g}s ({last})",
                    "raise --timeout or check the cluster's health",
                )
            time.sleep(_RETRY_PAUSE)

    def _find(self, group_id: str) -> tuple[Coordinator | None, str]:
        """The group's coordinator, or None and why ("unreachable" if no broker answered)."""
        why = "unreachable"
        for address in self.addresses:
            try:
                probe = self._probe(address)
                version = self._coordinator_version(probe, address)
                found = probe.find_coordinator(group_id, version)
            except WireError as exc:
                self._drop(address)
                log.debug("FindCoordinator at %s:%s: %s", *address, exc)
                continue
            if found.error_code == 0:
                return found, ""
            why = f"{error_name(found.error_code)} {found.error_message or ''}".strip()
            if found.error_code not in RETRIABLE:
                raise _group_error(group_id, found.error_code, self.bootstrap)
        return None, why

    # -- connections -----------------------------------------------------------------------
    def _probe(self, address: tuple[str, int]) -> Probe:
        probe = self._probes.get(address)
        if probe is None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise WireError("timed out")
            try:
                probe = Probe(*address, left, self.ssl_context, self.sasl)
            except WireAuthError as exc:
                # librdkafka's admin client then reports the refusal in its own words.
                raise WireUnsupported(str(exc)) from None
            self._probes[address] = probe
        return probe

    def _coordinator_version(self, probe: Probe, address: tuple[str, int]) -> int:
        version = self._find_version.get(address)
        if version is None:
            low, high = probe.api_versions().api_keys.get(FIND_COORDINATOR, (0, 0))
            if high < 1:
                raise WireUnsupported("FindCoordinator v1+ is not supported")
            version = self._find_version[address] = max(min(high, 4), low)
        return version

    def _check_version(self, probe: Probe, address: tuple[str, int]) -> None:
        if address in self._fetch_checked:
            return
        low, high = probe.api_versions().api_keys.get(OFFSET_FETCH, (0, -1))
        if not low <= _OFFSET_FETCH_VERSION <= high:
            raise WireUnsupported(f"OffsetFetch v{_OFFSET_FETCH_VERSION} is not supported")
        self._fetch_checked.add(address)

    def _drop(self, address: tuple[str, int]) -> None:
        probe = self._probes.pop(address, None)
        self._find_version.pop(address, None)
        self._fetch_checked.discard(address)
        if probe is not None:
            probe.sock.close()


def _offsets(group_id: str, partitions: dict[tuple[str, int], tuple[int, int]]) -> Offsets:
    out: Offsets = {}
    for (topic, partition), (offset, code) in partitions.items():
        if code != 0:
            log.debug("group %s %s/%s: %s", group_id, topic, partition, error_name(code))
            continue
        out[(topic, partition)] = offset if offset >= 0 else None
    return out


def _group_error(group_id: str, code: int, bootstrap: str) -> QctlError:
    if code == 30:
        return AuthenticationError(
            f"kafka at {bootstrap} refused access to group {group_id!r}",
            "check the ACLs of the user",
        )
    return QctlError(
        f"kafka at {bootstrap} refused the offsets of group {group_id!r}: {error_name(code)}"
    )
