"""Backends: one package per queue system, each a plugin behind ``qctl.backends.base``.

``CAPABILITIES`` names every capability protocol, for ``qctl plugins list`` and for the
contract tests that check a backend really implements what it claims.
"""

from __future__ import annotations

from qctl.backends.base import SupportsClusterInfo
from qctl.backends.capabilities.groups import SupportsConsumerGroups
from qctl.backends.capabilities.messaging import SupportsConsume, SupportsProduce
from qctl.backends.capabilities.offsets import SupportsOffsetAdmin
from qctl.backends.capabilities.queues import SupportsQueueStats
from qctl.backends.capabilities.topology import SupportsQueueMigration, SupportsTopology

CAPABILITIES: dict[str, type] = {
    "cluster-info": SupportsClusterInfo,
    "consumer-groups": SupportsConsumerGroups,
    "produce": SupportsProduce,
    "consume": SupportsConsume,
    "offset-admin": SupportsOffsetAdmin,
    "queue-stats": SupportsQueueStats,
    "topology": SupportsTopology,
    "queue-migration": SupportsQueueMigration,
}
