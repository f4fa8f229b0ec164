"""Records with times, and the oracle's reading of a time, for the tests of
ranges and windows: written with datetime and plain arithmetic, never with
shoal's code."""
from __future__ import annotations

import datetime
import json
import random

import orjson

MS = 1e11  # from this magnitude on a number is milliseconds
BASE = 1_420_070_400  # 2015-01-01T00:00:00Z
DAY = 86_400


def seconds(v):
    """Epoch seconds of a time value (seconds, ms, ISO-8601), or None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v / 1000.0 if abs(v) >= MS else v
    if isinstance(v, str):
        try:
            dt = datetime.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.timestamp()
    return None


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


def events(generated, n: int = 4000, seed: int = 5) -> list[bytes]:
    """Generated GitHub events whose created_at is any time of one day, in
    no order, written as epoch seconds, milliseconds or ISO-8601 text."""
    rng = random.Random(seed)
    out = []
    for raw in generated("github_events", n):
        o = orjson.loads(raw)
        t = BASE + rng.uniform(0, DAY)
        form = rng.random()
        o["created_at"] = (round(t) if form < 0.3 else round(t * 1000) if form < 0.5 else
                           iso(t).replace("+00:00", "Z"))
        out.append(json.dumps(o).encode())
    return out


def in_window(objs, since, until, field: str = "created_at") -> list[int]:
    """Indexes of the records whose time is in [since, until)."""
    s, u = seconds(since), seconds(until)
    return [i for i, o in enumerate(objs)
            if isinstance(o, dict) and (x := seconds(o.get(field))) is not None and s <= x < u]
