"""KRaft ``metadata.version`` feature levels and the Kafka releases they belong to.

Kafka does not report its software version over the protocol. The highest
``metadata.version`` level a broker supports identifies its release line (4.1.x
supports up to 4.1-IV1); the finalized level is what the cluster runs now. The table
is Kafka's own ``MetadataVersion`` enum (production levels of Kafka 4.4.0).
"""

from __future__ import annotations

LEVELS: dict[int, str] = {
    7: "3.3-IV3",
    8: "3.4-IV0",
    9: "3.5-IV0",
    10: "3.5-IV1",
    11: "3.5-IV2",
    12: "3.6-IV0",
    13: "3.6-IV1",
    14: "3.6-IV2",
    15: "3.7-IV0",
    16: "3.7-IV1",
    17: "3.7-IV2",
    18: "3.7-IV3",
    19: "3.7-IV4",
    20: "3.8-IV0",
    21: "3.9-IV0",
    22: "4.0-IV0",
    23: "4.0-IV1",
    24: "4.0-IV2",
    25: "4.0-IV3",
    26: "4.1-IV0",
    27: "4.1-IV1",
    28: "4.2-IV0",
    29: "4.2-IV1",
    30: "4.3-IV0",
    31: "4.4-IV0",
    32: "4.4-IV1",
    33: "4.4-IV2",
}


def describe_level(level: int, release_only: bool = False) -> str:
    """``27`` -> ``4.1-IV1`` (or ``4.1`` with ``release_only``); unknown levels say so."""
    name = LEVELS.get(level)
    if name is None:
        newest = max(LEVELS)
        if level > newest:
            release = LEVELS[newest].split("-")[0]
            return f"newer than {release} (metadata.version level {level})"
        return f"metadata.version level {level}"
    return name.split("-")[0] if release_only else name
