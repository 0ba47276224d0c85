"""Committed offsets of consumer groups, fetched with qctl's own wire client.

Why not ``AdminClient.list_consumer_group_offsets``: librdkafka (still in the 2.16 that
confluent-kafka 2.16 bundles) crashes the whole process with a segmentation fault when the
group coordinator answers OffsetFetch with a coordinator error (librdkafka issue #5040:
the admin client has no consumer group to hand the "find the coordinator again" request
to). A coordinator answers exactly that while a fresh cluster creates
``__consumer_offsets``, and for a few seconds after the broker that coordinated a group
died — so `qctl lag` (and the live view with it), `qctl offsets`, `dlq` and `replay`
died with SIGSEGV in the middle of a failover. Here those answers mean what Kafka
documents (``coordinators``).

One connection per broker serves all groups of a call; the requests are OffsetFetch v5
(non-flexible, every partition the group committed: what Kafka's own tools ask).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from qctl.backends.kafka.wire.admin import OFFSET_FETCH
from qctl.backends.kafka.wire.codec import WireError, WireUnsupported, error_name
from qctl.backends.kafka.wire.connection import Connection
from qctl.backends.kafka.wire.coordinators import (
    Address,
    CoordinatedWire,
    GroupRefused,
)

__all__ = ["CommittedOffsetsFetcher", "Offsets", "WireUnsupported"]

log = logging.getLogger(__name__)

_OFFSET_FETCH_VERSION = 5

Offsets = dict[tuple[str, int], int | None]


class CommittedOffsetsFetcher(CoordinatedWire):
    """Fetch the committed offsets of several groups within one timeout."""

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
            self.close()

    def _pipelined(self, ids: list[str]) -> dict[str, Offsets]:
        """The offsets of every group whose coordinator answered cleanly, with the lookups
        and the fetches pipelined per connection: a hundred groups in a few round trips
        instead of two hundred. Anything else is left out, not raised."""
        settled: dict[str, Offsets] = {}
        for address, groups in self.coordinators(ids).items():
            try:
                probe = self.probe(address)
                probe.version(OFFSET_FETCH, _OFFSET_FETCH_VERSION, _OFFSET_FETCH_VERSION)
                results = probe.offset_fetches(groups)
            except WireUnsupported:
                raise
            except WireError as exc:
                self.drop(address)
                log.debug("pipelined OffsetFetch at %s:%s: %s", *address, exc)
                continue
            for group, result in zip(groups, results, strict=True):
                if result.error_code == 0:
                    settled[group] = _offsets(group, result.partitions)
        return settled

    def _group(self, group_id: str) -> Offsets:
        def ask(probe: Connection, address: Address) -> Offsets:
            probe.version(OFFSET_FETCH, _OFFSET_FETCH_VERSION, _OFFSET_FETCH_VERSION)
            result = probe.offset_fetch(group_id)
            if result.error_code:
                raise GroupRefused(result.error_code)
            return _offsets(group_id, result.partitions)

        return self.per_group(group_id, ask, "offsets")


def _offsets(group_id: str, partitions: dict[tuple[str, int], tuple[int, int]]) -> Offsets:
    out: Offsets = {}
    for (topic, partition), (offset, code) in partitions.items():
        if code != 0:
            log.debug("group %s %s/%s: %s", group_id, topic, partition, error_name(code))
            continue
        out[(topic, partition)] = offset if offset >= 0 else None
    return out
