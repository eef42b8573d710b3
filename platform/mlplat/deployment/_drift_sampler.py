"""Drift samples for the monitoring plane: a bounded queue, drained in batches off-path."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from mlplat.deployment._types import DriftSink

Batch = tuple[str, str, list[dict[str, Any]], list[float], list[str | None]]
"""(model, version, rows, scores, request ids) — one ``record`` call on the drift monitor."""


class DriftSampler:
    """Samples (row, score, request id) for the drift monitor into a bounded queue.

    The request id (the caller's, e.g. a transaction id, else the generated one) travels with
    the sample so outcomes that arrive later join on it (monitoring KPI).

    Example:
        >>> s = DriftSampler(rate=1.0, queue_size=2)
        >>> [s.offer("fraud", "1", {"x": 1.0}, 0.2) for _ in range(3)]
        [True, True, False]
        >>> s.dropped, len(s.drain(batch_size=10))
        (1, 1)
    """

    def __init__(self, rate: float, queue_size: int, rng: random.Random | None = None) -> None:
        self.rate = rate
        self.queue_size = queue_size
        self._rng = rng or random.Random()
        self._queue: deque[tuple[str, str, dict[str, Any], float, str | None]] = deque()
        self.sampled = 0
        self.sent = 0
        self.dropped = 0

    def offer(self, model: str, version: str, row: dict[str, Any], score: float,
              request_id: str | None = None) -> bool:
        """Queue a sample (with probability ``rate``); False if not sampled or dropped."""
        if self.rate <= 0 or (self.rate < 1 and self._rng.random() >= self.rate):
            return False
        self.sampled += 1
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            return False
        self._queue.append((model, version, row, score, request_id))
        return True

    def drain(self, batch_size: int) -> list[Batch]:
        """Empty the queue into per-(model, version) batches of at most ``batch_size``."""
        batches: dict[tuple[str, str], tuple[list[dict[str, Any]], list[float], list[str | None]]] = {}
        out: list[Batch] = []
        while self._queue:
            model, version, row, score, rid = self._queue.popleft()
            rows, scores, ids = batches.setdefault((model, version), ([], [], []))
            rows.append(row)
            scores.append(score)
            ids.append(rid)
            if len(rows) >= batch_size:
                out.append((model, version, rows, scores, ids))
                del batches[(model, version)]
        out.extend((m, v, rows, scores, ids) for (m, v), (rows, scores, ids) in batches.items())
        return out

    def send(self, batches: list[Batch], sink: DriftSink) -> int:
        """Deliver drained batches through ``sink`` and count the outcome; returns delivered."""
        delivered, undelivered = deliver(batches, sink)
        self.account(delivered, undelivered)
        return delivered

    def account(self, delivered: int, undelivered: int) -> None:
        """Count a delivery done elsewhere (the Serve shell sends from a worker thread)."""
        self.sent += delivered
        self.dropped += undelivered

    def stats(self) -> dict[str, int]:
        return {"sampled": self.sampled, "sent": self.sent, "dropped": self.dropped,
                "queued": len(self._queue)}


def deliver(batches: list[Batch], sink: DriftSink) -> tuple[int, int]:
    """Send drift batches through ``sink``; returns (samples delivered, samples not delivered)."""
    delivered = undelivered = 0
    for model, version, rows, scores, ids in batches:
        try:
            ok = sink(model, version, rows, scores, ids)
        except Exception:  # the monitor's trouble must not hurt serving
            ok = False
        if ok:
            delivered += len(rows)
        else:
            undelivered += len(rows)
    return delivered, undelivered
