"""The garbage-collector pause of message loops: off inside, restored after, and the
young generations still collected by ``tick()``."""

from __future__ import annotations

import gc

import pytest

from qctl.gcpause import paused_gc


def test_collector_is_off_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():  # nested loops (a copier inside a job) keep it off
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_when_the_loop_raises() -> None:
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("broker gone")
    assert gc.isenabled()


def test_left_off_when_it_was_off_before() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_tick_frees_cycles_once_due() -> None:
    class Node:
        other: object = None

    with paused_gc(every=0.0) as pause:
        freed_before = gc.get_stats()[1]["collected"]
        for _ in range(100):  # reference cycles that only the cyclic collector frees
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        pause.tick()
        assert gc.get_stats()[1]["collected"] >= freed_before + 200


def test_every_twelfth_collection_is_a_full_one() -> None:
    with paused_gc(every=0.0) as pause:
        full_before = gc.get_stats()[2]["collections"]
        for _ in range(12):
            pause.tick()
        assert gc.get_stats()[2]["collections"] == full_before + 1
