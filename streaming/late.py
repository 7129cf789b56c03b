"""Which events are beyond the watermark: exactly those the minute query dropped, found in its offset log.

Spark's stateful operators drop a row of micro-batch N when its event time is at or before the watermark
of batch N-1 (the late-events rule of Spark's watermark propagator). The minute query's checkpoint
records, per batch, the watermark and the Kafka offsets it read up to (`offsets/<N>`). So for an event at
(partition, offset) the late-events query finds the minute batch that read it and applies that batch's
rule: the same verdict as the aggregation, whatever the two queries' batching, in one JVM or two.

Events the minute query has not read yet (the late-events query runs ahead of it, or the offsets are older
than the retained log) get a per-micro-batch threshold instead: max event time of the late-events
query's earlier batches − delay, never below the minute query's newest watermark (every later minute batch
drops at least what that watermark drops). The threshold of a batch is stored before its outputs are
written: after a `kill -9` the replayed batch uses the same one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
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
        return BatchMark(raw["batch_id"], _dt(raw["max_before"]), _dt(raw["threshold"]), _dt(raw["max_after"]))

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


@dataclass(frozen=True)
class DroppedRange:
    """Offsets [start, end) of one partition, read by one minute batch, which dropped the events at or
    before `late_watermark_ms` (epoch ms; 0 = none)."""

    partition: int
    start: int
    end: int
    late_watermark_ms: int


def read_offset_log(query_checkpoint: Path, topic: str) -> dict[int, tuple[int, dict[int, int]]]:
    """Batch id → (batchWatermarkMs, end offset per partition of `topic`), from the retained `offsets/<id>`
    files of a Kafka-sourced query (a version line, the JSON metadata, then one JSON line per source)."""
    offsets = query_checkpoint / "offsets"
    log: dict[int, tuple[int, dict[int, int]]] = {}
    for path in offsets.iterdir() if offsets.is_dir() else []:
        if not path.name.isdigit():
            continue  # Hadoop's .crc side files, temporary files
        try:
            lines = path.read_text().splitlines()
            watermark = int(json.loads(lines[1]).get("batchWatermarkMs", 0))
            sources = [json.loads(line) for line in lines[2:]]
            ends: dict[str, int] = next((source[topic] for source in sources if topic in source), {})
        except (OSError, IndexError, ValueError, TypeError):
            continue  # being written (Spark renames it into place, so rarely): the next batch reads it
        log[int(path.name)] = (watermark, {int(p): int(o) for p, o in ends.items()})
    return log


def dropped_ranges(log: dict[int, tuple[int, dict[int, int]]]) -> list[DroppedRange]:
    """Which offsets each logged minute batch read and what it dropped (see the module docstring). A
    batch whose predecessor is no longer logged is skipped (its start and late watermark are unknown);
    batch 0 has no late events."""
    no_batch: tuple[int, dict[int, int]] = (0, {})  # before batch 0: no watermark, offsets from 0
    ranges = []
    for batch_id, (_, ends) in sorted(log.items()):
        if batch_id > 0 and batch_id - 1 not in log:
            continue
        prev_watermark, prev_ends = log.get(batch_id - 1, no_batch)
        for partition, end in ends.items():
            start = prev_ends.get(partition, 0)
            if end > start:
                ranges.append(DroppedRange(partition, start, end, prev_watermark))
    return ranges


def newest_watermark(log: dict[int, tuple[int, dict[int, int]]]) -> datetime | None:
    """The watermark of the newest logged batch: every later batch drops at least what it drops."""
    millis = log[max(log)][0] if log else 0
    return datetime.fromtimestamp(millis / 1000, UTC) if millis > 0 else None
