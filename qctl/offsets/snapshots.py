"""Undo snapshots: the committed offsets of a group just before qctl changed them.

One JSON file per change in ``<state dir>/offsets/``, named after the group and the time
(``orders-svc--20261127T100000123456Z.json``), so they are easy to find by hand too.
A snapshot records the context and cluster it was taken on, and undo refuses to restore
it elsewhere: offsets of one cluster mean nothing on another.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from qctl.backends.capabilities.groups import TopicPartition
from qctl.errors import QctlError, UsageError
from qctl.timespec import UTC

FORMAT_VERSION = 1
_STAMP = "%Y%m%dT%H%M%S%fZ"
_MAX_GROUP_IN_NAME = 120


@dataclass
class Snapshot:
    id: str
    group: str
    created: dt.datetime
    context: str
    backend: str
    target: str
    #: What was about to happen, e.g. "reset to-datetime 2026-11-27T10:00:00.000Z".
    action: str
    #: Committed offsets before the change; None: the group had no commit there.
    offsets: dict[TopicPartition, int | None]
    path: Path

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "created": self.created,
            "context": self.context,
            "backend": self.backend,
            "target": self.target,
            "action": self.action,
            "partitions": len(self.offsets),
            "path": self.path,
        }


def default_root() -> Path:
    from qctl.config import state_dir

    return state_dir() / "offsets"


class SnapshotStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def save(
        self,
        group: str,
        offsets: dict[TopicPartition, int | None],
        *,
        context: str,
        backend: str,
        target: str,
        action: str,
        now: dt.datetime | None = None,
    ) -> Snapshot:
        created = (now or dt.datetime.now(UTC)).astimezone(UTC)
        try:
            return self._write(group, offsets, created, context, backend, target, action)
        except OSError as exc:
            raise QctlError(
                f"cannot save the undo snapshot in {self.root}: {exc}; nothing was changed",
                "make the directory writable, or point QCTL_STATE_DIR at one that is",
            ) from None

    def _write(
        self,
        group: str,
        offsets: dict[TopicPartition, int | None],
        created: dt.datetime,
        context: str,
        backend: str,
        target: str,
        action: str,
    ) -> Snapshot:
        self.root.mkdir(parents=True, exist_ok=True)
        base = f"{_file_safe(group)}--{created.strftime(_STAMP)}"
        data = {
            "version": FORMAT_VERSION,
            "group": group,
            "created": created.isoformat(),
            "context": context,
            "backend": backend,
            "target": target,
            "action": action,
            "offsets": [
                {"topic": tp.topic, "partition": tp.partition, "offset": off}
                for tp, off in sorted(offsets.items())
            ],
        }
        text = json.dumps(data, indent=2) + "\n"
        for attempt in range(100):
            snap_id = base if attempt == 0 else f"{base}-{attempt}"
            path = self.root / f"{snap_id}.json"
            try:
                # Exclusive create: two resets in the same microsecond never share a file.
                with path.open("x", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
            except FileExistsError:
                continue
            return _from_json(data, path)
        raise UsageError(f"cannot create a snapshot file in {self.root}")  # pragma: no cover

    def history(self, group: str) -> list[Snapshot]:
        """The group's snapshots, newest first."""
        if not self.root.is_dir():
            return []
        found = []
        prefix = f"{_file_safe(group)}--"
        for path in self.root.glob("*.json"):
            if not path.name.startswith(prefix):
                continue
            snap = self._read(path, strict=False)
            if snap is not None and snap.group == group:
                found.append(snap)
        return sorted(found, key=lambda s: (s.created, s.id), reverse=True)

    def load(self, group: str, ref: str | None) -> Snapshot:
        """A snapshot by id, by file path, or (``ref`` None) the group's newest."""
        if ref is None:
            snaps = self.history(group)
            if not snaps:
                raise UsageError(
                    f"no undo snapshots for group {group!r} in {self.root}",
                    "snapshots are saved by `qctl offsets reset --execute` and "
                    "`qctl offsets delete --execute`",
                )
            return snaps[0]
        candidates = [self.root / f"{ref}.json", self.root / ref, Path(ref)]
        for path in candidates:
            if path.is_file():
                snap = self._read(path, strict=True)
                assert snap is not None
                if snap.group != group:
                    raise UsageError(
                        f"snapshot {snap.id} belongs to group {snap.group!r}, not {group!r}",
                        "pass the matching --group",
                    )
                return snap
        raise UsageError(
            f"no snapshot {ref!r} for group {group!r}",
            f"list them with `qctl offsets history --group {group}`",
        )

    def remove(self, snapshot: Snapshot) -> None:
        snapshot.path.unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path, strict: bool) -> Snapshot | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return _from_json(data, path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if strict:
                raise UsageError(
                    f"{path}: not a qctl offsets snapshot ({exc})",
                    "pick another with `qctl offsets history --group G`",
                ) from None
            return None


def _from_json(data: dict[str, Any], path: Path) -> Snapshot:
    offsets: dict[TopicPartition, int | None] = {}
    for row in data["offsets"]:
        offset = row["offset"]
        if offset is not None and not isinstance(offset, int):
            raise TypeError(f"offset {offset!r} is not a number")
        offsets[TopicPartition(str(row["topic"]), int(row["partition"]))] = offset
    return Snapshot(
        id=path.stem,
        group=str(data["group"]),
        created=dt.datetime.fromisoformat(data["created"]),
        context=str(data["context"]),
        backend=str(data.get("backend", "kafka")),
        target=str(data.get("target", "")),
        action=str(data.get("action", "")),
        offsets=offsets,
        path=path,
    )


def _file_safe(group: str) -> str:
    """Group ids may hold any character; file names get a percent-encoded, bounded form."""
    safe = quote(group, safe="-_.@")
    safe = re.sub(r"^\.", "%2E", safe)
    if len(safe) > _MAX_GROUP_IN_NAME:
        import hashlib

        digest = hashlib.sha256(group.encode()).hexdigest()[:12]
        safe = f"{safe[:_MAX_GROUP_IN_NAME]}~{digest}"
    return safe
