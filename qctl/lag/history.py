"""Recorded samples of offsets and depths, the input of the status evaluation.

Whether a consumer keeps up cannot be told from one sample: Burrow's insight is to look
at a window of them. While ``qctl lag --watch`` runs the samples live in memory; between
one-shot runs (cron, CI) they are kept in a small JSON file in the qctl state directory,
one per context, so the second run already has a trend.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

log = logging.getLogger(__name__)

S = TypeVar("S", "GroupSample", "QueueSample")
T = TypeVar("T")

#: Bumped when the file layout changes; files of another version are ignored.
FILE_VERSION = 1


class PartitionPoint(NamedTuple):
    """One partition in one sample (a tuple: histories hold tens of thousands)."""

    committed: int | None
    #: The end the lag is measured against (last-stable or log-end offset).
    end: int | None
    #: The lag reported for this sample (None when never committed or unknown).
    lag: int | None
    #: Whether a live member owned the partition (it is "committing").
    owned: bool = False


@dataclass(frozen=True)
class GroupSample:
    #: Seconds since the epoch.
    at: float
    #: "topic/partition" -> point.
    partitions: Mapping[str, PartitionPoint]

    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions.values())


@dataclass(frozen=True)
class QueueSample:
    at: float
    depth: int
    consumers: int
    #: Messages per second acknowledged or delivered, as the broker reported.
    consume_rate: float | None = None
    publish_rate: float | None = None


class HistoryStore:
    """Per-group and per-queue samples, bounded by count and age."""

    def __init__(self, max_samples: int = 30, max_age: float = 3600.0) -> None:
        self.max_samples = max_samples
        self.max_age = max_age
        self._groups: dict[str, list[GroupSample]] = {}
        self._queues: dict[str, list[QueueSample]] = {}

    # -- recording --------------------------------------------------------------------
    def add_group(self, key: str, sample: GroupSample) -> list[GroupSample]:
        """Record a sample; returns the group's history including it."""
        return _append(self._groups.setdefault(key, []), sample, self.max_samples, self.max_age)

    def add_queue(self, key: str, sample: QueueSample) -> list[QueueSample]:
        return _append(self._queues.setdefault(key, []), sample, self.max_samples, self.max_age)

    # -- reading ----------------------------------------------------------------------
    def group(self, key: str) -> list[GroupSample]:
        return list(self._groups.get(key, []))

    def queue(self, key: str) -> list[QueueSample]:
        return list(self._queues.get(key, []))

    def group_lag_series(self, key: str, partition: str | None = None) -> list[int]:
        """Total (or one partition's) lag per recorded sample, oldest first."""
        out = []
        for sample in self._groups.get(key, []):
            if partition is None:
                out.append(sample.total_lag())
            else:
                point = sample.partitions.get(partition)
                out.append(point.lag or 0 if point is not None else 0)
        return out

    def queue_depth_series(self, key: str) -> list[int]:
        return [s.depth for s in self._queues.get(key, [])]

    # -- persistence ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FILE_VERSION,
            "groups": {
                key: [
                    {
                        "t": round(s.at, 3),
                        "p": {
                            tp: [p.committed, p.end, p.lag, int(p.owned)]
                            for tp, p in s.partitions.items()
                        },
                    }
                    for s in samples
                ]
                for key, samples in self._groups.items()
                if samples
            },
            "queues": {
                key: [
                    [round(s.at, 3), s.depth, s.consumers, s.consume_rate, s.publish_rate]
                    for s in samples
                ]
                for key, samples in self._queues.items()
                if samples
            },
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], max_samples: int = 30, max_age: float = 3600.0
    ) -> HistoryStore:
        store = cls(max_samples, max_age)
        if data.get("version") != FILE_VERSION:
            return store
        for key, samples in (data.get("groups") or {}).items():
            store._groups[str(key)] = [
                GroupSample(
                    at=float(s["t"]),
                    partitions={
                        str(tp): PartitionPoint(
                            _opt_int(v[0]), _opt_int(v[1]), _opt_int(v[2]), bool(v[3])
                        )
                        for tp, v in s["p"].items()
                    },
                )
                for s in samples
            ][-max_samples:]
        for key, samples in (data.get("queues") or {}).items():
            store._queues[str(key)] = [
                QueueSample(float(s[0]), int(s[1]), int(s[2]), _opt_float(s[3]), _opt_float(s[4]))
                for s in samples
            ][-max_samples:]
        return store

    @classmethod
    def load(cls, path: Path, max_samples: int = 30, max_age: float = 3600.0) -> HistoryStore:
        """The stored history, or an empty one when the file is missing or unreadable."""
        import orjson

        try:
            data = orjson.loads(path.read_bytes())
            return cls.from_dict(data, max_samples, max_age)
        except FileNotFoundError:
            return cls(max_samples, max_age)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            # A history is a convenience: a damaged file costs a trend, never a run.
            log.debug("ignoring unreadable lag history %s: %s", path, exc)
            return cls(max_samples, max_age)

    def save(self, path: Path, now: float) -> None:
        """Write atomically, leaving out entries whose newest sample is too old."""
        for table in (self._groups, self._queues):
            for key in [k for k, v in table.items() if not v or now - v[-1].at > self.max_age]:
                del table[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        import orjson

        tmp.write_bytes(orjson.dumps(self.to_dict()))
        os.replace(tmp, path)


class PendingHistory(HistoryStore):
    """A history loading in a background thread while the cluster is read; the first
    use waits for it. Parsing a large history costs about as much as a round trip."""

    def __init__(self, path: Path, max_samples: int = 30, max_age: float = 3600.0) -> None:
        super().__init__(max_samples, max_age)
        self._loaded: HistoryStore | None = None
        self._thread = threading.Thread(
            target=self._load, args=(path,), daemon=True, name="qctl-lag-history"
        )
        self._thread.start()

    def _load(self, path: Path) -> None:
        self._loaded = HistoryStore.load(path, self.max_samples, self.max_age)

    def _ready(self) -> None:
        if self._thread.is_alive() or self._loaded is not None:
            self._thread.join()
            if self._loaded is not None:
                self._groups, self._queues = self._loaded._groups, self._loaded._queues
                self._loaded = None

    def add_group(self, key: str, sample: GroupSample) -> list[GroupSample]:
        self._ready()
        return super().add_group(key, sample)

    def add_queue(self, key: str, sample: QueueSample) -> list[QueueSample]:
        self._ready()
        return super().add_queue(key, sample)

    def group(self, key: str) -> list[GroupSample]:
        self._ready()
        return super().group(key)

    def queue(self, key: str) -> list[QueueSample]:
        self._ready()
        return super().queue(key)

    def group_lag_series(self, key: str, partition: str | None = None) -> list[int]:
        self._ready()
        return super().group_lag_series(key, partition)

    def queue_depth_series(self, key: str) -> list[int]:
        self._ready()
        return super().queue_depth_series(key)

    def to_dict(self) -> dict[str, Any]:
        self._ready()
        return super().to_dict()

    def save(self, path: Path, now: float) -> None:
        self._ready()
        super().save(path, now)


def history_path(state_dir: Path, context: str) -> Path:
    return state_dir / "lag" / f"history-{context}.json"


def _append(samples: list[S], sample: S, max_samples: int, max_age: float) -> list[S]:
    # Samples closer than a second apart add noise, not information: keep the newer.
    if samples and sample.at - samples[-1].at < 1.0:
        samples[-1] = sample
    else:
        samples.append(sample)
    cutoff = sample.at - max_age
    while samples and samples[0].at < cutoff:
        samples.pop(0)
    del samples[:-max_samples]
    return list(samples)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def window(samples: Sequence[T], size: int) -> list[T]:
    """The last ``size`` samples."""
    return list(samples[-size:])
