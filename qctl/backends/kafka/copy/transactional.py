"""Exactly-once copies between Kafka topics (``SupportsTransactionalCopy``), by two engines.

Both engines run the consume-transform-produce loop of Kafka's exactly-once semantics
with the same protocol steps and share their bookkeeping (``common``):

1. the job's transactional producer is initialised first: that fences a killed run of
   the job and aborts its open transaction, so the committed position read next is final;
2. the copy starts at the job group's committed offsets (read_committed);
3. each transaction writes a batch of records and the group's new offsets, and commits
   both at once.

``wire_engine`` speaks the protocol itself (record batches in, record batches out) for
copies with a fixed route or a raw mapper. Anything off its plain path hands the rest
of the copy to ``library_engine``, which goes through librdkafka: it resumes from the
last committed transaction, exactly as a resumed job would.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import replace
from typing import Protocol

from qctl.backends.capabilities.transactions import CopyControl, CopyReport, CopyRequest
from qctl.backends.kafka.copy.common import Continued, merged
from qctl.backends.kafka.core import KafkaCore
from qctl.errors import UsageError

log = logging.getLogger(__name__)


class CopyEngine(Protocol):
    """One run of a copy by one engine."""

    def run(self) -> tuple[CopyReport, str | None]:
        """Copy until the end, a limit or a stop: the report of what was committed, and
        why the engine handed the rest over (None when it did not)."""
        ...


class KafkaTransactions(KafkaCore):
    """``SupportsTransactionalCopy`` for Kafka."""

    def transactional_copy(self, request: CopyRequest, control: CopyControl) -> CopyReport:
        if request.mapper is None and request.fixed is None and request.raw_mapper is None:
            raise UsageError("a transactional copy needs a mapper or a fixed route")
        if request.source.backend != "kafka":
            raise UsageError(f"cannot copy transactionally from {request.source}")
        # The copy loops allocate millions of short-lived objects and make no reference
        # cycles: the cyclic collector would only keep re-scanning them.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._copy(request, control)
        finally:
            if collecting:
                gc.enable()

    def _copy(self, request: CopyRequest, control: CopyControl) -> CopyReport:
        from qctl.backends.kafka.copy.library_engine import LibraryCopier
        from qctl.backends.kafka.copy.wire_engine import WireCopier, eligible

        first: CopyReport | None = None
        config = eligible(self, request)
        if config is not None:
            wire = WireCopier(self, request, control, config)
            first, handover = wire.run()
            if handover is None:
                return first
            log.info("the copy continues through librdkafka: %s", handover)
            request = replace(request, end_offsets=first.end_offsets or request.end_offsets)
            control = Continued(control, first, wire.in_doubt)
        rest, _ = LibraryCopier(self, request, control).run()
        return rest if first is None else merged(first, rest)
