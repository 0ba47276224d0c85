"""Backends: one package per queue system, each a plugin behind ``qctl.backends.base``.

``CAPABILITIES`` names every capability protocol, for ``qctl plugins list`` and for the
contract tests that check a backend really implements what it claims. The protocols
are imported on first access (PEP 562), so importing ``qctl.backends.base`` for
``--help`` does not load every capability's data classes.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

#: Capability name -> "module:Protocol".
CAPABILITY_PATHS: dict[str, str] = {
    "cluster-info": "qctl.backends.base:SupportsClusterInfo",
    "consumer-groups": "qctl.backends.capabilities.groups:SupportsConsumerGroups",
    "produce": "qctl.backends.capabilities.messaging:SupportsProduce",
    "consume": "qctl.backends.capabilities.messaging:SupportsConsume",
    "offset-admin": "qctl.backends.capabilities.offsets:SupportsOffsetAdmin",
    "queue-stats": "qctl.backends.capabilities.queues:SupportsQueueStats",
    "topology": "qctl.backends.capabilities.topology:SupportsTopology",
    "queue-migration": "qctl.backends.capabilities.topology:SupportsQueueMigration",
    "dead-letters": "qctl.backends.capabilities.deadletters:SupportsDeadLetters",
    "transactional-copy": "qctl.backends.capabilities.transactions:SupportsTransactionalCopy",
}


@functools.cache
def _capabilities() -> dict[str, type]:
    resolved: dict[str, type] = {}
    for capability, path in CAPABILITY_PATHS.items():
        module, attr = path.split(":")
        resolved[capability] = getattr(importlib.import_module(module), attr)
    return resolved


def __getattr__(name: str) -> Any:
    if name == "CAPABILITIES":
        return _capabilities()
    raise AttributeError(name)
