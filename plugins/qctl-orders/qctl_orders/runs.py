"""Run records: which runs happened, with what settings, and whether they were healed.

A run is identified by an id carried in every event it causes (body ``run_id``, header
``run-id``), so ``verify`` can pick its orders out of topics and queues that other runs
share. The record lives in qctl's state directory, per context, backend and namespace::

    $QCTL_STATE_DIR/orders/<context>/<backend>[.<namespace>]/<run id>.json

It holds what ``verify`` cannot read from the brokers (how many orders the order service
had confirmed, when the run started) and the ``healed`` switch that ``qctl orders heal``
turns on and every running service re-reads within a second.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qctl.config import state_dir
from qctl.errors import NotFoundError, QctlError
from qctl_orders.wiring import Wiring


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"run-{stamp}-{secrets.token_hex(3)}"


@dataclass
class RunRecord:
    run_id: str
    context: str
    backend: str
    namespace: str | None
    started_at: str
    settings: dict[str, Any] = field(default_factory=dict)
    #: OrderCreated events the broker confirmed (None while the run is going).
    orders_created: int | None = None
    finished_at: str | None = None
    healed_at: str | None = None
    summary: dict[str, Any] | None = None

    @property
    def healed(self) -> bool:
        return self.healed_at is not None

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.started_at)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class RunBook:
    """The run records of one context, backend and namespace."""

    def __init__(self, context: str, wiring: Wiring, root: Path | None = None) -> None:
        base = root if root is not None else state_dir() / "orders"
        scope = wiring.backend + (f".{wiring.namespace}" if wiring.namespace else "")
        self.dir = base / _safe(context) / scope
        self.context = context
        self.wiring = wiring
        self._cache: dict[str, tuple[float, float, bool]] = {}
        self._lock = threading.Lock()

    def path(self, run_id: str) -> Path:
        return self.dir / f"{_safe(run_id)}.json"

    # -- writing -----------------------------------------------------------------------------
    def create(self, settings: dict[str, Any]) -> RunRecord:
        record = RunRecord(
            run_id=new_run_id(),
            context=self.context,
            backend=self.wiring.backend,
            namespace=self.wiring.namespace,
            started_at=_now(),
            settings=settings,
        )
        self.save(record)
        return record

    def save(self, record: RunRecord) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.path(record.run_id)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise QctlError(
                f"cannot write the run record in {self.dir}: {exc.strerror}",
                "make the directory writable, or point QCTL_STATE_DIR at one that is",
            ) from None

    def finish(self, record: RunRecord, orders_created: int, summary: dict[str, Any]) -> None:
        current = self.load(record.run_id)  # keep a heal that happened meanwhile
        current.orders_created = (current.orders_created or 0) + orders_created
        current.finished_at = _now()
        current.summary = summary
        self.save(current)

    def heal(self, run_id: str) -> RunRecord:
        record = self.load(run_id)
        if record.healed_at is None:
            record.healed_at = _now()
            self.save(record)
        return record

    # -- reading -----------------------------------------------------------------------------
    def load(self, run_id: str) -> RunRecord:
        path = self.path(run_id)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFoundError(
                f"no run {run_id!r} of {self.wiring.label} in context {self.context!r}",
                "`qctl orders runs` lists the recorded runs",
            ) from None
        except (OSError, ValueError) as exc:
            raise QctlError(f"cannot read the run record {path}: {exc}") from None
        known = set(RunRecord.__dataclass_fields__)
        return RunRecord(**{k: v for k, v in data.items() if k in known})

    def all(self) -> list[RunRecord]:
        records = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                records.append(self.load(path.stem))
            except QctlError:
                continue
        return sorted(records, key=lambda r: r.started_at)

    def latest(self) -> RunRecord:
        records = self.all()
        if not records:
            raise NotFoundError(
                f"no recorded run of {self.wiring.label} in context {self.context!r}",
                "start one with `qctl orders run"
                + (f" -b {self.wiring.backend}" if self.wiring.backend != "kafka" else "")
                + (f" --namespace {self.wiring.namespace}" if self.wiring.namespace else "")
                + "`",
            )
        return records[-1]

    def resolve(self, run_id: str | None) -> RunRecord:
        return self.load(run_id) if run_id else self.latest()

    def healed(self, run_id: str | None) -> bool:
        """Whether ``run_id`` was healed; re-read at most once a second (services call
        this for every poison message, and a heal must reach running services)."""
        if not run_id:
            return False
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(run_id)
            if cached is not None and now - cached[0] < 1.0:
                return cached[2]
        path = self.path(run_id)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        if cached is not None and cached[1] == mtime:
            healed = cached[2]
        else:
            try:
                healed = self.load(run_id).healed if mtime >= 0 else False
            except QctlError:
                healed = False
        with self._lock:
            self._cache[run_id] = (now, mtime, healed)
        return healed


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "_"
