"""Version-dependent RabbitMQ behaviour, for the versions users run."""

from __future__ import annotations

import pytest

from qctl.backends.rabbitmq.behaviour import behaviour_for, parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.10.8", (3, 10, 8)),
        (b"3.13.7", (3, 13, 7)),
        ("4.0.0-rc.1", (4, 0, 0)),
        ("4.1", (4, 1, 0)),
        ("4.2.1+alpha.123", (4, 2, 1)),
        ("", None),
        (None, None),
        ("unknown", None),
    ],
)
def test_parse_version(text: str | bytes | None, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == expected


# version: (x-death counted on republish, default quorum delivery-limit,
#           nack counts a delivery, peek uses attempts, transient queues allowed)
CASES = {
    "3.10.8": (True, None, True, True, True),
    "3.12.14": (True, None, True, True, True),
    "3.13.0": (False, None, True, True, True),
    "3.13.7": (True, None, True, True, True),
    "4.0.5": (False, 20, True, True, True),
    "4.2.0": (False, 20, True, True, True),
    "4.3.0": (False, 20, False, False, False),
}


@pytest.mark.parametrize("version", sorted(CASES))
def test_flags_per_version(version: str) -> None:
    counted, limit, nack_counts, peek_costs, transient = CASES[version]
    b = behaviour_for(version)
    assert b.client_x_death_counted is counted
    assert b.quorum_default_delivery_limit == limit
    assert b.nack_counts_delivery is nack_counts
    assert b.reject_counts_delivery is True
    assert b.peek_uses_delivery_attempts is peek_costs
    assert b.transient_queues_allowed is transient
    assert b.global_qos_allowed is transient
    assert b.broker_owns_x_headers is (b.version >= (3, 13, 0))
    assert b.requeue_method == "nack"


def test_effective_delivery_limit() -> None:
    old, new = behaviour_for("3.12.0"), behaviour_for("4.0.0")
    assert old.effective_delivery_limit("quorum", None) is None
    assert new.effective_delivery_limit("quorum", None) == 20
    assert new.effective_delivery_limit("quorum", 5) == 5
    assert new.effective_delivery_limit("quorum", -1) is None  # switched off
    assert new.effective_delivery_limit("classic", None) is None
    assert new.effective_delivery_limit("stream", 3) is None


def test_unknown_versions_get_the_newest_rules() -> None:
    b = behaviour_for(None)
    assert b.version is None
    assert not b.nack_counts_delivery
    assert b.quorum_default_delivery_limit == 20
