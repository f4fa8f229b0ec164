"""Retention: which cut the store's policy asks for.

StoreConfig.retain_bytes keeps the newest N bytes of log; retain_seconds
(with timestamp_expression) drops pages whose every record is older than
that. The compactor's background thread (engine/compaction.py) asks
`policy_cut` every compaction_interval_seconds and compacts when the cut
moves begin by at least a page.

A cut is always a page start (records never straddle pages, so it is a
record boundary that scans and replay can start from) at or below the
read-only address (never into the tail page, which ingest still fills).
"""
from __future__ import annotations

import datetime
import threading
import time
from typing import Any

import orjson

from ..config import StoreConfig
from ..errors import InvalidArgument, PSFError
from ..psf import EvaluationBudget, Expression, parse_definition
from ..store.address import FIRST_ADDRESS
from ..store.gate import Gate
from ..store.hlog import HybridLog
from ..store.record import payload_of, record_addresses

# Epoch timestamps at or above this are milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 1e11


def page_cut(hlog: HybridLog, want: int) -> int:
    """The cut for a wanted address: at most the read-only address, rounded
    down to a page start."""
    cut = min(want, hlog.read_only_address)  # never into the tail page
    return cut >> hlog.page_bits << hlog.page_bits


def parse_timestamp(config: StoreConfig) -> Expression | None:
    """The store's timestamp_expression, checked at open (InvalidArgument)."""
    if config.timestamp_expression is None:
        return None
    try:
        return parse_definition(config.timestamp_expression, config.expression_limits)
    except PSFError as exc:
        raise InvalidArgument(f"timestamp_expression: {exc}") from None


def timestamp_seconds(value: Any) -> float | None:
    """Epoch seconds from a timestamp value: a number of seconds or
    milliseconds, or an ISO-8601 string (UTC when it names no zone)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        if v != v or v in (float("inf"), float("-inf")):
            return None
        return v / 1000.0 if abs(v) >= _MS_THRESHOLD else v
    if isinstance(value, str):
        try:
            dt = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.timestamp()
    return None


class RetentionPolicy:
    """The store's retention rules, read against its log. `stop` (an Event)
    ends a long age_cut early when the store closes."""

    def __init__(self, config: StoreConfig, timestamp: Expression | None, hlog: HybridLog, gate: Gate,
                 stop: threading.Event):
        self.config = config
        self._timestamp = timestamp
        self._log = hlog
        self._gate = gate
        self._stop = stop

    @property
    def active(self) -> bool:
        return self.config.retain_bytes is not None or self.config.retain_seconds is not None

    def policy_cut(self, now: float | None = None) -> tuple[int | None, str | None]:
        """The cut the retention policy asks for, if it moves begin by at
        least a page, and which rule asked."""
        cfg = self.config
        hlog = self._log
        begin = hlog.begin_address
        best, trigger = None, None
        if cfg.retain_bytes is not None:
            cut = page_cut(hlog, hlog.tail_address - cfg.retain_bytes)
            if cut > begin:
                best, trigger = cut, "retain_bytes"
        if cfg.retain_seconds is not None and self._timestamp is not None:
            now = time.time() if now is None else now
            cut = self.age_cut(now - cfg.retain_seconds)
            if cut > begin and (best is None or cut > best):
                best, trigger = cut, "retain_seconds"
        return best, trigger

    def age_cut(self, threshold: float) -> int:
        """The start of the first page holding a record whose timestamp is at
        or after `threshold` (or unreadable: such records count as new), at
        most the read-only address."""
        hlog = self._log
        begin = hlog.begin_address
        limit = hlog.read_only_address
        page = begin >> hlog.page_bits
        budget = EvaluationBudget(self.config.expression_limits)  # per call: a budget is not thread-safe
        while page << hlog.page_bits < limit:
            if self._stop.is_set():
                break
            base = page << hlog.page_bits
            with self._gate:
                data, valid = hlog.page_bytes(page)
            addrs, damaged = record_addresses(data, base, valid, max(base, FIRST_ADDRESS, begin),
                                              tombstones=False)
            if damaged is not None:
                return max(begin, base)  # unreadable: kept (retention by bytes can drop it)
            mv = memoryview(data)
            for a in reversed(addrs):  # the newest record of a page is the likeliest to be new
                if self._is_new(payload_of(mv, a - base), threshold, budget):
                    return max(begin, base)
            page += 1
        return limit

    def _is_new(self, text: bytes, threshold: float, budget: EvaluationBudget) -> bool:
        try:
            ts = timestamp_seconds(budget.search(self._timestamp, orjson.loads(text)))
        except Exception:  # noqa: BLE001 - an unreadable timestamp (or over budget) counts as new
            return True
        return ts is None or ts >= threshold

    def to_dict(self, background: bool) -> dict:
        cfg = self.config
        return {"retain_bytes": cfg.retain_bytes, "retain_seconds": cfg.retain_seconds,
                "timestamp_expression": cfg.timestamp_expression,
                "interval_seconds": cfg.compaction_interval_seconds, "background": background}
