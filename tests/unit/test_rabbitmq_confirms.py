"""``ConfirmTracker``: confirms and returns settled exactly, whatever order and grouping
the broker chooses within the protocol."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.backends.capabilities.messaging import OK, Outcome
from qctl.backends.rabbitmq.amqp.confirms import NACKED, ConfirmError, ConfirmTracker

A = ("orders", "order.created", b"{}")
B = ("orders", "order.created", b'{"id": 2}')
C = ("", "payments", b"{}")


def test_single_and_multiple_acks_settle_in_publishing_order() -> None:
    t: ConfirmTracker[str] = ConfirmTracker()
    for key, token in ((A, "a"), (B, "b"), (C, "c")):
        t.sent(key, token)
    assert t.acked(2, multiple=False) == [("b", OK)]
    assert t.acked(3, multiple=True) == [("a", OK), ("c", OK)]
    assert len(t) == 0


def test_a_nack_fails_what_it_covers() -> None:
    t: ConfirmTracker[str] = ConfirmTracker()
    t.sent(A, "a")
    t.sent(B, "b")
    assert t.nacked(2, multiple=True) == [
        ("a", Outcome(ok=False, error=NACKED)),
        ("b", Outcome(ok=False, error=NACKED)),
    ]


def test_a_return_fails_its_publish_although_an_ack_follows() -> None:
    t: ConfirmTracker[str] = ConfirmTracker()
    t.sent(A, "a")
    t.sent(B, "b")
    t.returned(B, "unroutable: 312 NO_ROUTE")
    # RabbitMQ coalesces: one multiple ack covers the routed and the returned publish.
    assert t.acked(2, multiple=True) == [
        ("a", OK),
        ("b", Outcome(ok=False, error="unroutable: 312 NO_ROUTE", returned=True)),
    ]


def test_an_identical_publish_waits_until_the_one_in_flight_is_settled() -> None:
    t: ConfirmTracker[int] = ConfirmTracker()
    assert t.admit(A)
    t.sent(A, 1)
    assert not t.admit(A)  # same exchange, routing key and body: must wait
    assert t.admit(C)  # same body, other routing key: a return tells them apart
    t.sent(C, 2)
    t.returned(A, "unroutable: 312 NO_ROUTE")
    assert not t.admit(A)  # returned but not yet settled: its ack is still to come
    assert t.acked(1, multiple=False)[0][1].returned
    assert t.admit(A)
    t.sent(A, 3)
    t.returned(A, "unroutable: 312 NO_ROUTE")
    assert t.acked(3, multiple=True) == [
        (2, OK),
        (3, Outcome(ok=False, error="unroutable: 312 NO_ROUTE", returned=True)),
    ]


def test_sending_an_identical_publish_while_one_is_unconfirmed_is_refused() -> None:
    t: ConfirmTracker[int] = ConfirmTracker()
    t.sent(A, 1)
    with pytest.raises(ConfirmError):
        t.sent(A, 2)
    assert len(t) == 1 and t.seq == 1


@pytest.mark.parametrize(
    ("act", "words"),
    [
        (lambda t: t.returned(B, "unroutable: 312 NO_ROUTE"), "matches no publish"),
        (lambda t: t.acked(5, False), "never made"),
        (lambda t: t.nacked(2, True), "never made"),
    ],
)
def test_confirms_that_contradict_the_publishes_are_errors(act: object, words: str) -> None:
    t: ConfirmTracker[int] = ConfirmTracker()
    t.sent(A, 1)
    with pytest.raises(ConfirmError, match=words):
        act(t)  # type: ignore[operator]


def test_a_publish_confirmed_or_returned_twice_is_an_error() -> None:
    t: ConfirmTracker[int] = ConfirmTracker()
    t.sent(A, 1)
    t.sent(B, 2)
    t.returned(B, "unroutable")
    with pytest.raises(ConfirmError, match="twice"):
        t.returned(B, "unroutable")
    t.acked(1, multiple=False)
    with pytest.raises(ConfirmError, match="second time"):
        t.acked(1, multiple=False)


def test_a_return_after_its_ack_matches_nothing() -> None:
    """A return names an unconfirmed publish; once its ack settled it, a late return
    cannot be placed (the broker always returns first)."""
    t: ConfirmTracker[int] = ConfirmTracker()
    t.sent(A, 1)
    t.acked(1, multiple=False)
    with pytest.raises(ConfirmError):
        t.returned(A, "unroutable")


def test_fail_all_fails_every_unconfirmed_publish_and_keeps_its_return() -> None:
    t: ConfirmTracker[str] = ConfirmTracker()
    t.sent(A, "a")
    t.sent(B, "b")
    t.returned(A, "unroutable: 312 NO_ROUTE")
    assert t.fail_all("the connection closed") == [
        ("a", Outcome(ok=False, error="unroutable: 312 NO_ROUTE")),
        ("b", Outcome(ok=False, error="the connection closed")),
    ]
    assert len(t) == 0 and t.admit(A) and t.admit(B)


def test_multiple_with_tag_zero_settles_everything() -> None:
    t: ConfirmTracker[int] = ConfirmTracker()
    t.sent(A, 1)
    t.sent(B, 2)
    assert [token for token, _ in t.acked(0, multiple=True)] == [1, 2]


def test_without_mandatory_identical_publishes_go_together_and_returns_are_errors() -> None:
    t: ConfirmTracker[int] = ConfirmTracker(mandatory=False)
    t.sent(A, 1)
    assert t.admit(A)
    t.sent(A, 2)
    with pytest.raises(ConfirmError):
        t.returned(A, "unroutable")
    assert t.acked(2, multiple=True) == [(1, OK), (2, OK)]


@given(
    routed=st.lists(st.booleans(), min_size=1, max_size=60),
    bodies=st.integers(1, 3),
    window=st.integers(1, 10),
    flush=st.lists(st.integers(1, 6), min_size=1, max_size=60),
)
def test_returns_land_on_exactly_the_unroutable_publishes(
    routed: list[bool], bodies: int, window: int, flush: list[int]
) -> None:
    """A simulated broker with RabbitMQ's ordering: a return goes out when the publish
    is handled, before its confirm; confirms pile up and leave in bursts as one
    multiple ack up to the oldest unconfirmed publish, then single acks
    (``coalesce_and_send``). Bodies repeat (``bodies`` distinct ones). Whatever the
    grouping, exactly the unroutable messages fail."""
    t: ConfirmTracker[int] = ConfirmTracker()
    keys = [("x", "k", bytes([i % bodies])) for i in range(len(routed))]
    outcomes: dict[int, Outcome] = {}
    next_message = 0
    in_broker: list[int] = []  # sequence numbers handled, confirms not yet sent
    seq_of: dict[int, int] = {}
    message_of: dict[int, int] = {}
    bursts = iter(flush * 100)
    while len(outcomes) < len(routed):
        # Publish what the window and the invariant allow; the broker handles each.
        while next_message < len(routed) and len(t) < window and t.admit(keys[next_message]):
            seq = t.sent(keys[next_message], next_message)
            seq_of[next_message] = seq
            message_of[seq] = next_message
            if not routed[next_message]:
                t.returned(keys[next_message], "unroutable")
            in_broker.append(seq)
            next_message += 1
        # A burst of confirms: one multiple ack up to the oldest pending, then singles.
        burst = sorted(in_broker[: next(bursts)])
        del in_broker[: len(burst)]
        pending = min(in_broker, default=None)
        cut = [s for s in burst if pending is None or s < pending]
        singles = [s for s in burst if s not in cut]
        if cut:
            for token, outcome in t.acked(cut[-1], multiple=True):
                outcomes[token] = outcome
        for s in singles:
            for token, outcome in t.acked(s, multiple=False):
                outcomes[token] = outcome
    assert {i for i, o in outcomes.items() if not o.ok} == {
        i for i, r in enumerate(routed) if not r
    }
    assert all(o.returned for o in outcomes.values() if not o.ok)
