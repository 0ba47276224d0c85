"""Listing and describing consumer groups with qctl's own wire client.

Why not ``AdminClient.list_consumer_groups`` / ``describe_consumer_groups``: when their
requests time out during a broker outage, librdkafka (still in 2.16) aborts the whole
process on the assertion ``eonce->refcnt > 0`` (librdkafka issue #4605), and the lag view
asks both every refresh. See ``coordinators``.

The requests, and what they give:

* Metadata v4 with no topics: the brokers, since every broker lists only the groups it
  coordinates.
* ListGroups v3-v5 to every broker: the groups, with state (v4+) and type (v5+). Like
  librdkafka's call, only consumer groups are listed: protocol type ``consumer``, or none
  for the "simple" groups that only commit offsets (not Connect, share or streams groups).
* DescribeGroups v4 to each coordinator, all its groups in one request: the classic
  groups, their members and assignments (decoded from the consumer protocol).
* ConsumerGroupDescribe v0 (KIP-848) for the groups DescribeGroups calls Dead on a broker
  that has the new protocol: such a broker describes a new-protocol group only this way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from qctl.backends.capabilities.groups import (
    GroupDescription,
    GroupListing,
)
from qctl.backends.kafka.wire.codec import WireError, WireUnsupported, error_name
from qctl.backends.kafka.wire.connection import Connection
from qctl.backends.kafka.wire.coordinators import (
    RETRIABLE,
    Address,
    CoordinatedWire,
    GroupRefused,
)
from qctl.backends.kafka.wire.groups import (
    CONSUMER_GROUP_DESCRIBE,
    DESCRIBE_GROUPS,
    GROUP_ID_NOT_FOUND,
    LIST_GROUPS,
    METADATA,
    Broker,
    decode_consumer_group_describe_response,
    decode_describe_groups_response,
    decode_list_groups_response,
    decode_metadata_brokers,
    encode_consumer_group_describe_request,
    encode_describe_groups_request,
    encode_list_groups_request,
    encode_metadata_request,
)
from qctl.errors import UnreachableError

__all__ = ["GroupsWire", "WireUnsupported"]

log = logging.getLogger(__name__)


# -- the client ----------------------------------------------------------------------------
class GroupsWire(CoordinatedWire):
    """List and describe consumer groups within one timeout."""

    def list_groups(self) -> tuple[list[GroupListing], list[str]]:
        """Every consumer group of the cluster, and what kept the listing incomplete (a
        broker that did not answer, or answered with an error). ``UnreachableError``
        when no broker listed its groups: that is no answer, not a cluster without groups."""
        try:
            brokers = self._brokers()
            groups: dict[str, GroupListing] = {}
            missing = []
            answered = 0
            for broker in brokers:
                listed, why = self._listed_by(broker)
                if why is None:
                    answered += 1
                else:
                    missing.append(why)
                for group in listed:
                    groups[group.group_id] = group
            if not answered:
                raise UnreachableError(
                    f"kafka at {self.bootstrap} did not list its consumer groups: {missing[0]}",
                    "check that the cluster is running",
                )
            return sorted(groups.values(), key=lambda g: g.group_id), missing
        finally:
            self.close()

    def _listed_by(self, broker: Broker) -> tuple[list[GroupListing], str | None]:
        """The groups ``broker`` coordinates, and why that listing is incomplete (None: it
        is not). After a coordinator error the broker is asked again until the deadline,
        as Kafka's admin client does; after a failed connection once more, on a fresh one
        (a cut connection is not a broker that is down, and one that is down is not
        waited for)."""
        address = (broker.host, broker.port)
        reconnected = False
        while True:
            try:
                probe = self.probe(address)
                version = probe.version(LIST_GROUPS, 3, 5)
                [answer] = probe.pipeline([partial(encode_list_groups_request, version=version)])
                error, listed = decode_list_groups_response(answer, version)
            except WireUnsupported:
                raise
            except WireError as exc:
                self.drop(address)
                if reconnected:
                    return [], f"broker {broker.node_id} ({broker.host}:{broker.port}): {exc}"
                reconnected = True
                continue
            if not error:
                return listed, None
            if error not in RETRIABLE or not self.wait_to_retry():
                return listed, f"broker {broker.node_id}: {error_name(error)}"

    def _brokers(self) -> list[Broker]:
        why = "no broker answered"
        # Each address twice: a connection cut once is not a cluster that is down.
        for address in [*self.addresses, *self.addresses]:
            try:
                probe = self.probe(address)
                probe.version(METADATA, 4, 4)
                [answer] = probe.pipeline([encode_metadata_request])
                return decode_metadata_brokers(answer)
            except WireUnsupported:
                raise
            except WireError as exc:
                self.drop(address)
                why = f"{address[0]}:{address[1]}: {exc}"
        raise UnreachableError(
            f"kafka at {self.bootstrap} is unreachable: {why}",
            "check bootstrap_servers (`qctl context show`) and that the cluster is running",
        )

    def describe(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        ids = sorted(set(group_ids))
        try:
            settled: dict[str, GroupDescription] = {}
            if len(ids) > 1:
                for address, groups in self.coordinators(ids).items():
                    settled.update(self._settled(address, groups))
            return {g: settled[g] if g in settled else self._group(g) for g in ids}
        finally:
            self.close()

    def _settled(self, address: Address, groups: list[str]) -> dict[str, GroupDescription]:
        """The descriptions one coordinator gave without an error; the rest is left out
        for the one-group path."""
        try:
            probe = self.probe(address)
            answers = self._ask(probe, address, groups)
        except WireUnsupported:
            raise
        except WireError as exc:
            self.drop(address)
            log.debug("DescribeGroups at %s:%s: %s", *address, exc)
            return {}
        return {g: desc for g, (error, desc) in answers.items() if not error}

    def _group(self, group_id: str) -> GroupDescription:
        def ask(probe: Connection, address: Address) -> GroupDescription:
            error, desc = self._ask(probe, address, [group_id])[group_id]
            if error:
                raise GroupRefused(error)
            return desc

        return self.per_group(group_id, ask, "description")

    def _ask(
        self, probe: Connection, address: Address, groups: list[str]
    ) -> dict[str, tuple[int, GroupDescription]]:
        """DescribeGroups, then ConsumerGroupDescribe for the groups it calls Dead."""
        probe.version(DESCRIBE_GROUPS, 4, 4)
        [answer] = probe.pipeline([partial(encode_describe_groups_request, group_ids=groups)])
        node = self.nodes.get(address)
        answers = decode_describe_groups_response(answer, node)
        dead = [g for g, (error, desc) in answers.items() if not error and desc.state == "Dead"]
        if dead and probe.supports(CONSUMER_GROUP_DESCRIBE, 0, 0):
            [answer] = probe.pipeline(
                [partial(encode_consumer_group_describe_request, group_ids=dead)]
            )
            for group, (error, desc) in decode_consumer_group_describe_response(
                answer, node
            ).items():
                # GROUP_ID_NOT_FOUND: no new-protocol group either, so Dead it is.
                if error != GROUP_ID_NOT_FOUND:
                    answers[group] = (error, desc)
        return answers
