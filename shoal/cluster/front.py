"""The cluster front: one store's API over many shards, each a Ray actor
that owns a shoal store (shard.py).

    import shoal.cluster
    c = shoal.cluster.open("data/", shards=4)   # starts a local Ray, or joins
    c.register_psf("type", "type")              # on every shard
    c.ingest(b'{"type":"push"}\\n...')          # cut into pieces, routed
    list(c.query("type", "push", limit=10))     # merged, newest first
    c.count("type", "push")                     # summed

What the front does and what it leaves to Ray:
  - Ray places the shard actors (one CPU each by default, `shard_cpus`),
    restarts one that dies (max_restarts=-1; its constructor reopens, and
    so recovers, its store) and carries the pieces (buffers of >= 1 MiB).
  - Actors are named (namespace "shoal", name from the cluster directory)
    and detached: they outlive the front, so a front that dies loses no
    record a shard acknowledged, and a new front on the same directory
    finds them. close() stops them (keep_shards=True leaves them up).
  - A shard is pinned to the node it was first placed on (its store is on
    that node's disk).

Acknowledgement: ingest returns once every shard it sent a piece to has
stored it (durable=True: and fsynced it). A call lost with its shard is
sent again once Ray restarts the shard if none of it was stored there,
else the ingest raises ShardUnavailable with what was acknowledged
(ingest.py); reads are retried by Ray while the shard restarts. allow_partial=True (per call or per cluster)
answers reads from the shards that answered and reports the rest in
`last_shards` ({total, successful, failed}), as Elasticsearch's _shards does.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import MAX_INGEST_THREADS, StoreConfig
from ..errors import InvalidArgument, ShardUnavailable, ShoalError
from ..ingest.framing import InputFormat
from ..results import IngestResult
from . import addresses, shardmap, status
from .calls import ShardCalls
from .counts import ClusterCounts
from .ingest import check, run
from .growth import ClusterGrowth
from .keys import ClusterKeys
from .reads import ClusterReads
from .routing import PIECE_BYTES, Router
from .routing import Sequence as Seq
from .shard import ShardServer
from .pause import Pause
from .psfs import ClusterPSFs
from .shardmap import ShardMap
from .tail import ClusterTail

NAMESPACE = "shoal"
MAP_LOCK = "cluster.lock"  # fronts change the shard map one at a time (flock)
CLOSE_WAIT = 10.0         # seconds close() waits for requests still out before it stops the shards


def _ray():
    try:
        import ray
    except ImportError:
        raise ShoalError("shoal's cluster runs on Ray, which is not installed: "
                         "pip install 'shoal[cluster]' (or pip install ray)") from None
    return ray


def open(path: str | os.PathLike, shards: int | None = None, **kwargs: Any) -> "Cluster":  # noqa: A001
    """Open (or create) the cluster whose map lives in directory `path`."""
    return Cluster(path, shards, **kwargs)


class Cluster(ShardCalls, ClusterPSFs, ClusterReads, ClusterCounts, ClusterKeys, ClusterGrowth, ClusterTail):
    def __init__(self, path: str | os.PathLike, shards: int | None = None, *,
                 virtual_shards: int = shardmap.DEFAULT_VIRTUAL_SHARDS, key: str | None = None,
                 route_by: str | None = None, address: str | None = None, shard_cpus: float = 1.0,
                 allow_partial: bool = False, piece_bytes: int = PIECE_BYTES, config: StoreConfig | None = None,
                 attach: bool = False, **overrides: Any):
        ray = self._ray = _ray()
        self.path = Path(path).resolve()
        m = shardmap.load(self.path)
        if m is None and attach:
            raise InvalidArgument(f"no cluster in {self.path} (no {shardmap.MAP_FILE})")
        if m is None:
            self.path.mkdir(parents=True, exist_ok=True)  # the map lock and pause files live here
            m = ShardMap.create(shards if shards is not None else 1, virtual_shards, key=key, route_by=route_by)
        else:
            if shards is not None and shards < m.shards and m.key is None:
                raise InvalidArgument(f"the cluster in {self.path} has {m.shards} shards, not {shards}: only a "
                                      f"keyed cluster removes shards (growth.py); open it without a shard count "
                                      f"(shards=, --shards)")
            if key is not None and key != m.key:
                raise InvalidArgument(f"the cluster in {self.path} is keyed by {m.key!r}, not {key!r}")
            if route_by is not None and route_by != m.route_by:
                raise InvalidArgument(f"the cluster in {self.path} routes by {m.route_by!r}, not {route_by!r}")
        cfg = dict(overrides)
        if config is not None:  # what it sets apart from the defaults, as overrides each shard applies
            default = StoreConfig()
            cfg = {**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                      if getattr(config, f.name) != getattr(default, f.name)}, **cfg}
        if m.key is not None:
            cfg["key"] = m.key
        self.config = StoreConfig(**cfg)
        self._store_overrides = cfg
        self.map = m
        self.key = m.key
        self.allow_partial = allow_partial
        self.last_shards: dict = {}
        self._started_ray = False
        if not ray.is_initialized():
            ray.init(address=address, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self._started_ray = True
        self._router = Router(m, self.config, piece_bytes)
        self._seq = Seq()
        self._lock = threading.Lock()  # changes of the map and its PSF list, one at a time
        # Taking up another front's changes (_refresh) has a lock of its own:
        # a call holding the pause (pause.py) refreshes, and must never wait
        # for _lock, which a move holds while it waits for the calls to end.
        self._refresh_lock = threading.Lock()
        self._changing = False  # _changing_map is held
        self._closed = False
        self._map_mtime = self._map_stamp()  # the map file as this front last read it
        self._pause = Pause(self.path)
        self._letting_go: set[threading.Thread] = set()  # requests no answer wants, still out (_let_go)
        self._actors = [self._attach(i) if attach else self._actor(i, shard_cpus) for i in range(m.shards)]
        infos = self._all("ping", partial=attach)
        placed = False
        for i, info in enumerate(infos):
            if info is not None and i not in m.nodes:
                m.nodes[i] = info["node"]
                placed = True
        if placed or not (self.path / shardmap.MAP_FILE).exists():
            shardmap.save(self.path, m)
        self._map_mtime = self._map_stamp()
        if m.psfs:  # a shard that missed a registration catches up
            self._all("apply_psfs", m.psfs)
        if m.move is not None or m.retiring:  # a move or removal cut short (a front died in it): finished first
            self.rebalance()
        if shards is not None and shards > m.shards:
            self.add_shards(shards - m.shards, shard_cpus=shard_cpus)
        elif shards is not None and shards < m.shards:
            self.remove_shards(m.shards - shards)

    # ---- the shard map ----
    def _map_stamp(self) -> int:
        try:
            return (self.path / shardmap.MAP_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    @contextlib.contextmanager
    def _changing_map(self) -> Iterator[None]:
        """Hold the cluster's map lock (a file lock: fronts on one cluster
        change its map one at a time) with the map as the last front left it."""
        with self._lock:
            fd = os.open(self.path / MAP_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._refresh(force=True)
                self._changing = True  # this front's map is the newest: no refresh may overwrite it
                yield
            finally:
                self._changing = False
                os.close(fd)  # and with it the lock

    def _save_map(self) -> None:
        shardmap.save(self.path, self.map)
        self._map_mtime = self._map_stamp()

    def _refresh(self, force: bool = False) -> None:
        """Take up what another front changed in the shard map (shards it
        added, PSFs it registered): one stat per call when nothing did."""
        if self._changing and not force:
            return
        stamp = self._map_stamp()
        if stamp == self._map_mtime and not force:
            return
        with self._refresh_lock:
            m = shardmap.load(self.path)
            if m is None:
                return
            while len(self._actors) < m.shards:
                self._actors.append(self._attach(len(self._actors)))
            del self._actors[m.shards:]  # shards another front removed (growth.py)
            self.map.shards, self.map.nodes, self.map.psfs, self.map.move = m.shards, m.nodes, m.psfs, m.move
            self.map.past_owners, self.map.retiring = m.past_owners, m.retiring
            self.map.owners[:] = m.owners  # the router holds this list
            self._map_mtime = stamp

    def _name(self, shard: int) -> str:
        return f"shard-{shard}@{self.path}"

    def _attach(self, shard: int):
        """The running actor of a shard (attach=True: start none)."""
        try:
            return self._ray.get_actor(self._name(shard), namespace=NAMESPACE)
        except ValueError:
            raise ShardUnavailable(f"shard {shard} of {self.path} is not running in this Ray cluster "
                                   f"(is a shoal cluster serve up on it?)", [shard]) from None

    def _actor(self, shard: int, cpus: float):
        ray = self._ray
        opts: dict[str, Any] = dict(name=self._name(shard), namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
                                    max_restarts=-1, max_task_retries=0, max_concurrency=8, num_cpus=cpus)
        node = self.map.nodes.get(shard)
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        cls = ray.remote(_ShardActor)
        threads = max(1, min(int(cpus), MAX_INGEST_THREADS))
        return cls.options(**opts).remote(str(self.map.shard_dir(self.path, shard)), self._store_overrides, shard,
                                          threads)

    # ---- ingest ----
    def ingest(self, data: Any, *, on_error: str = "skip", durable: bool = False, format: str = "auto",
               max_input_bytes: int | None = None, addresses: bool = False, threads: int = 1) -> IngestResult:
        """Store the records of `data` (as Store.ingest: bytes, a path, a
        binary file or an iterable of chunks; NDJSON, an array, gzip),
        routed to shards (routing.py). Returns once every shard that got a
        piece has stored it (durable=True: fsynced). on_error="reject":
        every shard checks its pieces before any stores (ingest._checked):
        a bad record anywhere raises IngestRejected, nothing stored."""
        self._check_open()
        # threads: each shard prepares its pieces on its own (one process per shard)
        if on_error not in ("skip", "reject"):
            raise InvalidArgument(f"on_error must be 'skip' or 'reject', not {on_error!r}")
        with self._pause.shared():  # no ingest while records move (pause.py)
            self._refresh()
            return run(self, data, durable=durable, fmt=InputFormat.parse(format), max_input_bytes=max_input_bytes,
                       with_addresses=addresses, reject=on_error == "reject")

    def check(self, data: Any, *, format: str = "auto", max_input_bytes: int | None = None) -> IngestResult:
        """What ingest would store of `data` and every error it would
        report, nothing stored (Store.check): each shard checks the pieces
        routed to it."""
        self._check_open()
        self._refresh()
        return check(self, data, fmt=InputFormat.parse(format), max_input_bytes=max_input_bytes)

    # ---- upkeep ----
    def flush(self, durable: bool = True) -> None:
        self._all("flush", durable)

    def wait_compressed(self, timeout: float = 60.0) -> bool:
        """Store.wait_compressed on every shard at once: True when none waits."""
        return all(self._all("wait_compressed", timeout))

    def checkpoint(self):
        """A checkpoint on every shard (each its own: status.checkpoint)."""
        return status.checkpoint(self._all("checkpoint"), len(self._actors))

    def checkpoints(self) -> list[int]:
        """Checkpoint ids every shard has."""
        lists = self._all("checkpoints")
        return sorted(set.intersection(*(set(x) for x in lists))) if lists else []

    def compact(self, until_address: int | None = None, *, retain_bytes: int | None = None):
        """Compact every shard (as Store.compact), exactly one of:
        until_address, a cluster address: each shard drops what comes
        before that record in cluster order (its cut rounded down to a page
        start, as a store's); retain_bytes: each shard keeps
        the newest retain_bytes / shards bytes of its log. Live versions of
        a keyed cluster's keys are kept (copied to their shard's tail).
        Returns the shards' results summed (begin_before and begin_after:
        0, each shard's own begin is in stats()["shards"])."""
        self._check_open()
        if (until_address is None) == (retain_bytes is None):
            raise InvalidArgument("compact takes exactly one of until_address and retain_bytes")
        if retain_bytes is not None and (not isinstance(retain_bytes, int) or isinstance(retain_bytes, bool)
                                         or retain_bytes < 0):
            raise InvalidArgument(f"retain_bytes must be a non-negative integer, not {retain_bytes!r}")
        with self._pause.shared():
            pos = self._position(until_address)
            per_shard = None if retain_bytes is None else retain_bytes // max(1, len(self._actors))
            return status.compaction(self._all("compact", pos, per_shard))

    @property
    def begin_address(self) -> int:
        return 0

    @property
    def tail_address(self) -> int:
        """The end of the cluster's address space (addresses.py)."""
        return addresses.encode(len(self._actors), 0)

    def status(self) -> dict:
        """Every shard's health, node, records, disk bytes and virtual
        shards owned; the cluster's totals, and whether a move of keys or
        a removal of shards is unfinished (moving)."""
        out = []
        for i, info in enumerate(self._all("ping", partial=True)):
            out.append({"shard": i, "healthy": info is not None, **(info or {"node": self.map.nodes.get(i)}),
                        "virtual_shards": self.map.owners.count(i)})
        return {"shards": out, "virtual_shards": self.map.virtual_shards, "key": self.key,
                "route_by": self.map.route_by, "records": sum(s.get("records", 0) for s in out),
                "disk_bytes": sum(s.get("disk_bytes", 0) for s in out),
                "moving": self.map.move is not None or bool(self.map.retiring)}

    def shard_map(self) -> dict:
        """How this cluster routes, for a client that posts to its shards
        itself: its Ray (address, namespace), its directory, its shards'
        actor names and nodes, and the virtual shard -> shard map (a
        record's virtual shard: crc32 of its key's or routing value's
        canonical bytes, mod virtual_shards; see routing.py). Such a client
        opens shoal.cluster.open(directory, attach=True, address=...) on a
        node of that Ray: a front of its own, without HTTP."""
        self._check_open()
        self._refresh()
        m = self.map
        ray_address = self._ray.get_runtime_context().gcs_address
        return {"directory": str(self.path), "ray": {"address": ray_address, "namespace": NAMESPACE},
                "virtual_shards": m.virtual_shards, "owners": list(m.owners), "key": m.key,
                "route_by": m.route_by, "moving": m.move is not None or bool(m.retiring),
                "shards": [{"shard": i, "actor": self._name(i), "node": m.nodes.get(i)}
                           for i in range(m.shards)]}

    def stats(self) -> dict:
        """Store.stats()'s fields summed over the shards (status.py)."""
        return status.stats(self._all("stats"), len(self._actors),
                            {"shards": len(self._actors), "virtual_shards": self.map.virtual_shards,
                             "key": self.key, "route_by": self.map.route_by, "path": str(self.path)})

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, keep_shards: bool = False) -> None:
        """Close every shard's store and stop its actor (keep_shards=True:
        leave them serving, for another front); stops the Ray this front
        started."""
        if self._closed:
            return
        deadline = time.monotonic() + CLOSE_WAIT
        for t in list(self._letting_go):  # requests still out: answered before their shards stop
            t.join(max(0.0, deadline - time.monotonic()))
        try:
            if not keep_shards:
                refs = [self._call(i, "close", retries=0) for i in range(len(self._actors))]
                for i, ref in enumerate(refs):
                    try:
                        self._get(i, ref)
                    except ShardUnavailable:
                        pass
                for a in self._actors:
                    self._ray.kill(a, no_restart=True)
        finally:
            self._closed = True
            self._pause.close()
            if self._started_ray:
                self._ray.shutdown()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ShardActor(ShardServer):
    """ShardServer as Ray runs it: ping also names the node, and call is
    the entry point of the front's calls (Cluster._call)."""

    def call(self, method: str, args: tuple) -> Any:
        if method.startswith("_"):
            raise InvalidArgument(f"not a shard call: {method!r}")
        return getattr(self, method)(*args)

    def _resolve(self, data: Any) -> Any:
        import ray
        return ray.get(data) if isinstance(data, ray.ObjectRef) else data

    def ping(self) -> dict:
        import ray
        info = super().ping()
        info["node"] = ray.get_runtime_context().get_node_id()
        return info
