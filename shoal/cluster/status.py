"""A cluster's stats, health and checkpoints, summed from its shards' in
the shapes a store gives (so GET /stats, /healthz, /metrics and
POST /checkpoints answer a cluster as they answer a store), with each
shard's own beside them under "shards"."""
from __future__ import annotations

from typing import Any

from ..results import CheckpointInfo, CompactionResult
from . import addresses

_SUMMED = ("records", "log_bytes", "memory_bytes", "memory_budget_bytes", "disk_bytes", "syncs")


def _sum_dicts(dicts: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


def stats(per_shard: list[dict], shards: int, info: dict) -> dict:
    """Store.stats()'s fields summed over the shards (addresses: the
    cluster's address space), PSFs as shard 0 has them, and each shard's
    stats under "shards"."""
    out: dict[str, Any] = {k: sum(s.get(k, 0) for s in per_shard) for k in _SUMMED}
    out["key"] = per_shard[0].get("key") if per_shard else None
    out["addresses"] = {"begin": 0, "tail": addresses.encode(shards, 0)}
    out["index"] = _sum_dicts([s["index"] for s in per_shard])
    out["tally"] = _sum_dicts([s.get("tally", {}) for s in per_shard])
    out["psfs"] = per_shard[0]["psfs"] if per_shard else []
    out["ingest"] = _sum_dicts([s["ingest"] for s in per_shard])
    out["recovery"] = {"replayed_records": sum(s["recovery"]["replayed_records"] for s in per_shard),
                       "shards": [s["recovery"] for s in per_shard]}
    out["compaction"] = {"shards": [s["compaction"] for s in per_shard]}
    out["cluster"] = info
    out["shards"] = per_shard
    return out


def checkpoint(infos: list[CheckpointInfo], shards: int) -> CheckpointInfo:
    """What a cluster checkpoint reports: each shard wrote its own; the
    newest id and time, the records summed, the slowest shard's duration."""
    return CheckpointInfo(max(i.checkpoint_id for i in infos), addresses.encode(shards, 0), 0,
                          sum(i.records for i in infos), max(i.created_at for i in infos),
                          max(i.duration_ms for i in infos))


def compaction(per_shard: list[CompactionResult]) -> CompactionResult:
    """What a cluster compaction reports: the shards' counts and bytes
    summed, the slowest shard's duration (shards compact at once)."""
    return CompactionResult(0, 0, sum(r.bytes_reclaimed for r in per_shard), sum(r.records_dropped for r in per_shard),
                            sum(r.records_copied for r in per_shard), sum(r.segments_deleted for r in per_shard),
                            max((r.duration_ms for r in per_shard), default=0.0),
                            sum(r.disk_bytes_before for r in per_shard), sum(r.disk_bytes_after for r in per_shard))
