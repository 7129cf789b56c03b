"""Which events are beyond the watermark: a per-micro-batch threshold, persisted so a replay agrees.

Spark's stateful operators drop a row when its event time is at or before the query's watermark, and the
watermark of micro-batch N is derived from the event times of batches before N. The late-events query
applies the same rule to its own micro-batches: threshold(N) = max event time of batches < N − delay. It
also never goes below the aggregation query's current watermark (read from that query's progress), so
an event the aggregation drops is reported late even when that query runs ahead. The threshold of a
batch is stored before its outputs are written: after a `kill -9` the replayed batch uses the same one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path


@dataclass(frozen=True)
class BatchMark:
    """What one micro-batch saw: its id, the max event time before it, its threshold, the max after it."""

    batch_id: int
    max_before: datetime | None
    threshold: datetime | None
    max_after: datetime | None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class LateTracker:
    """Thresholds per micro-batch id, kept in a small JSON file next to the query's checkpoint."""

    def __init__(self, path: Path, delay: timedelta) -> None:
        self.path = path
        self.delay = delay
        self.last: BatchMark | None = self._load()

    def _load(self) -> BatchMark | None:
        if not self.path.exists():
            return None
        raw = json.loads(self.path.read_text())
        return BatchMark(
            raw["batch_id"], _dt(raw["max_before"]), _dt(raw["threshold"]), _dt(raw["max_after"])
        )

    def threshold(self, batch_id: int, floor: datetime | None = None) -> datetime | None:
        """The threshold of `batch_id`: the stored one on a replay, else computed (and the floor applied)."""
        if self.last is not None and self.last.batch_id == batch_id:
            return self.last.threshold
        max_before = self.last.max_after if self.last is not None else None
        threshold = max_before - self.delay if max_before is not None else None
        if floor is not None and (threshold is None or floor > threshold):
            threshold = floor
        self._save(BatchMark(batch_id, max_before, threshold, max_before))
        return threshold

    def observe(self, batch_id: int, batch_max: datetime | None) -> None:
        """Record the max event time of `batch_id` once its outputs are written."""
        assert self.last is not None and self.last.batch_id == batch_id, "threshold() first"
        current = self.last.max_before
        after = batch_max if current is None or (batch_max is not None and batch_max > current) else current
        self._save(BatchMark(batch_id, self.last.max_before, self.last.threshold, after))

    def _save(self, mark: BatchMark) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(mark).items()}
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)  # atomic: a crash leaves the old or the new mark, never half of one
        self.last = mark

