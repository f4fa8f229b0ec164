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
stored it (durable=True: and fsynced it). A shard that fails mid-ingest
raises ShardUnavailable with what was acknowledged; reads are retried by
Ray while the shard restarts. allow_partial=True (per call or per cluster)
answers reads from the shards that answered and reports the rest in
`last_shards` ({total, successful, failed}), as Elasticsearch's _shards does.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..config import StoreConfig
from ..errors import (
    InvalidArgument,
    PSFExists,
    PSFNotFound,
    ShardUnavailable,
    ShoalError,
)
from ..ingest.framing import InputFormat
from ..results import IngestResult, Record, RecordBatch
from . import addresses, merge, shardmap
from .ingest import run
from .routing import PIECE_BYTES, Router
from .routing import Sequence as Seq
from .shard import ShardServer
from .shardmap import ShardMap

NAMESPACE = "shoal"
PAGE_RECORDS = 4096       # records per page a shard sends a merge
READ_RETRIES = 3          # a read in flight when its shard died is retried this often


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


class Cluster:
    def __init__(self, path: str | os.PathLike, shards: int | None = None, *,
                 virtual_shards: int = shardmap.DEFAULT_VIRTUAL_SHARDS, key: str | None = None,
                 route_by: str | None = None, address: str | None = None, shard_cpus: float = 1.0,
                 allow_partial: bool = False, piece_bytes: int = PIECE_BYTES, config: StoreConfig | None = None,
                 **overrides: Any):
        ray = self._ray = _ray()
        self.path = Path(path).resolve()
        m = shardmap.load(self.path)
        if m is None:
            m = ShardMap.create(shards if shards is not None else 1, virtual_shards, key=key, route_by=route_by)
        else:
            if shards is not None and shards != m.shards:
                raise InvalidArgument(f"the cluster in {self.path} has {m.shards} shards, not {shards}: "
                                      f"open it without shards= (adding shards is not served yet)")
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
        self._lock = threading.Lock()  # the map and its PSF list
        self._closed = False
        self._actors = [self._actor(i, shard_cpus) for i in range(m.shards)]
        infos = self._all("ping")
        placed = False
        for i, info in enumerate(infos):
            if i not in m.nodes:
                m.nodes[i] = info["node"]
                placed = True
        shardmap.save(self.path, m) if placed or not (self.path / shardmap.MAP_FILE).exists() else None
        if m.psfs:  # a shard that missed a registration catches up
            self._all("apply_psfs", m.psfs)

    def _actor(self, shard: int, cpus: float):
        ray = self._ray
        name = f"shard-{shard}@{self.path}"
        opts: dict[str, Any] = dict(name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
                                    max_restarts=-1, max_task_retries=0, max_concurrency=8, num_cpus=cpus)
        node = self.map.nodes.get(shard)
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        cls = ray.remote(_ShardActor)
        return cls.options(**opts).remote(str(self.map.shard_dir(self.path, shard)), self._store_overrides, shard)

    # ---- calls on shards ----
    def _call(self, shard: int, method: str, *args: Any, retries: int = READ_RETRIES):
        m = getattr(self._actors[shard], method)
        if retries:
            m = m.options(max_task_retries=retries)
        return m.remote(*args)

    def _get(self, shard: int, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayActorError as exc:
            raise ShardUnavailable(f"shard {shard} did not answer ({type(exc).__name__}); Ray restarts it: "
                                   f"try again", [shard]) from exc
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
            if cause is not None:
                raise cause from None
            raise

    def _all(self, method: str, *args: Any, partial: bool = False) -> list:
        """Call every shard at once; their answers in shard order (None for
        a shard that failed, with partial)."""
        self._check_open()
        refs = [self._call(i, method, *args) for i in range(len(self._actors))]
        out, failed = [], []
        for i, ref in enumerate(refs):
            try:
                out.append(self._get(i, ref))
            except ShardUnavailable:
                if not partial:
                    raise
                failed.append(i)
                out.append(None)
        self.last_shards = {"total": len(refs), "successful": len(refs) - len(failed), "failed": len(failed),
                            "failed_shards": failed}
        return out

    def _partial(self, allow_partial: bool | None) -> bool:
        return self.allow_partial if allow_partial is None else allow_partial

    def _check_open(self) -> None:
        if self._closed:
            from ..errors import StoreClosed
            raise StoreClosed("the cluster front was closed")

    # ---- PSFs ----
    def register_psf(self, name: str, definition: str, *, exist_ok: bool = False, replace: bool = False,
                     bucket: float | None = None, time: bool = False):
        """Register a PSF on every shard (JMESPath text: a callable cannot
        be replayed to a shard that restarts). As Store.register_psf."""
        if not isinstance(definition, str):
            raise InvalidArgument("a cluster's PSFs are JMESPath text (a callable cannot be sent to its shards)")
        with self._lock:
            current = self._active().get(name)
            if current is not None:
                same = (current["definition"] == definition and current.get("bucket") == bucket
                        and bool(current.get("time")) == bool(time))
                if same and exist_ok:
                    return self.psf(name)
                if not replace:
                    raise PSFExists(f"PSF {name!r} is already active, defined as {current['definition']!r}; to "
                                    f"change it, deregister it first (or register with replace)",
                                    name=name, definition=current["definition"])
            reg = {"op": "register", "name": name, "definition": definition, "bucket": bucket, "time": bool(time)}
            self.map.psfs.append(reg)
            shardmap.save(self.path, self.map)
        return self._all("register_psf", reg)[0]

    def deregister_psf(self, name: str):
        with self._lock:
            if name not in self._active():
                raise PSFNotFound(f"no active PSF named {name!r}")
            reg = {"op": "deregister", "name": name}
            self.map.psfs.append(reg)
            shardmap.save(self.path, self.map)
        return self._all("deregister_psf", reg)[0]

    def _active(self) -> dict[str, dict]:
        active: dict[str, dict] = {}
        for reg in self.map.psfs:
            if reg["op"] == "register":
                active[reg["name"]] = reg
            else:
                active.pop(reg["name"], None)
        return active

    def psf(self, name: str):
        for p in self.psfs():
            if p.name == name and p.active:
                return p
        raise PSFNotFound(f"no active PSF named {name!r}")

    def psfs(self, *, include_inactive: bool = True) -> list:
        """The PSFs of shard 0 (every shard has the same ones; their ranges
        are each shard's own)."""
        self._check_open()
        return self._get(0, self._call(0, "psfs", include_inactive))

    # ---- ingest ----
    def ingest(self, data: Any, *, on_error: str = "skip", durable: bool = False, format: str = "auto",
               max_input_bytes: int | None = None, addresses: bool = False, threads: int = 1) -> IngestResult:
        """Store the records of `data` (as Store.ingest: bytes, a path, a
        binary file or an iterable of chunks; NDJSON, an array, gzip),
        routed to shards (routing.py). Returns once every shard that got a
        piece has stored it (durable=True: fsynced). on_error="reject" is
        not served by a cluster (a shard cannot take back what it stored
        while another refuses)."""
        self._check_open()
        if addresses:
            raise InvalidArgument("a cluster ingest gives no per-record addresses (addresses=True); query "
                                  "for the records instead")
        # threads: each shard prepares its pieces on its own (one process per shard)
        if on_error != "skip":
            raise InvalidArgument("a cluster ingests with on_error='skip' only (on_error='reject' would need "
                                  "every shard to agree before any stores)")
        return run(self, data, durable=durable, fmt=InputFormat.parse(format), max_input_bytes=max_input_bytes)

    # ---- reads ----
    def _position(self, address: int | None) -> tuple[int, int, int] | None:
        """A cluster address as a position in cluster order (seq, shard,
        store address), for from_address / to_address."""
        if address is None:
            return None
        if not isinstance(address, int) or isinstance(address, bool) or address < 0:
            raise InvalidArgument(f"an address is a non-negative integer, not {address!r}")
        shard, local = addresses.decode(address)
        if shard >= len(self._actors):
            raise InvalidArgument(f"address {address} names shard {shard}; this cluster has {len(self._actors)}")
        return self._get(shard, self._call(shard, "seq_at", local)), shard, local

    def _batches(self, kind: str, spec: Any, limit: int | None, order: str, options: dict,
                 allow_partial: bool | None, from_address: int | None = None,
                 to_address: int | None = None) -> Iterator[RecordBatch]:
        self._check_open()
        if order not in ("newest", "oldest"):
            raise InvalidArgument(f"order must be 'newest' or 'oldest', not {order!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidArgument(f"limit must be a non-negative integer, not {limit!r}")
        if limit == 0:
            return iter(())
        partial = self._partial(allow_partial)
        failed: list[int] = []
        n = len(self._actors)
        self.last_shards = {"total": n, "successful": n, "failed": 0, "failed_shards": failed}

        lo_pos, hi_pos = self._position(from_address), self._position(to_address)

        def fetch(shard: int, after: int | None, k: int):
            lo, hi = (None, after) if order == "newest" else (None if after is None else after + 1, None)
            return self._call(shard, "page", kind, spec, k, order, lo, hi, options, lo_pos, hi_pos)

        def resolve(shard: int, ref):
            try:
                return self._get(shard, ref)
            except ShardUnavailable:
                if not partial:
                    raise
                failed.append(shard)
                self.last_shards.update(successful=n - len(failed), failed=len(failed))
                return None

        return merge.merge_pages(list(range(n)), fetch, resolve, order, limit, PAGE_RECORDS)

    def _records(self, batches: Iterator[RecordBatch]) -> Iterator[Record]:
        for b in batches:
            yield from b

    @staticmethod
    def _options(include_superseded: bool, fields, since, until) -> dict:
        return {"include_superseded": include_superseded, "fields": list(fields) if fields else None,
                "since": since, "until": until}

    def query_batches(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all", limit: int | None = None,
                      order: str = "newest", from_address: int | None = None, to_address: int | None = None,
                      include_superseded: bool = False, cancel: threading.Event | None = None,
                      fields: Sequence[str] | None = None, since: Any = None, until: Any = None,
                      allow_partial: bool | None = None) -> Iterator[RecordBatch]:
        """The records of query_all (mode "all") or query_any ("any") from
        every shard, merged in cluster order (addresses.py) as RecordBatches
        whose addresses are cluster addresses. from_address (inclusive) and
        to_address (exclusive) are positions in cluster order given by a
        record's cluster address: to_address=last.address continues a
        newest-first answer after its last record, from_address=last.address
        + 1 an oldest-first one, as on a store."""
        if mode not in ("all", "any"):
            raise InvalidArgument(f"mode must be 'all' or 'any', not {mode!r}")
        conditions = [tuple(c) for c in conditions]
        return _until(cancel, self._batches(mode, conditions, limit, order,
                                            self._options(include_superseded, fields, since, until),
                                            allow_partial, from_address, to_address))

    def query(self, psf: str, value: Any = True, **kw: Any) -> Iterator[Record]:
        """Records whose PSF `psf` has `value`, from every shard, in cluster
        order (addresses.py), newest first by default, `limit` at most."""
        return self._records(self.query_batches([(psf, value)], **kw))

    def query_all(self, conditions: Iterable[tuple[str, Any]], **kw: Any) -> Iterator[Record]:
        return self._records(self.query_batches(conditions, mode="all", **kw))

    def query_any(self, conditions: Iterable[tuple[str, Any]], **kw: Any) -> Iterator[Record]:
        return self._records(self.query_batches(conditions, mode="any", **kw))

    def scan_batches(self, expression: str, *, limit: int | None = None, order: str = "newest",
                     from_address: int | None = None, to_address: int | None = None,
                     include_superseded: bool = False, cancel: threading.Event | None = None,
                     fields: Sequence[str] | None = None, since: Any = None, until: Any = None,
                     allow_partial: bool | None = None) -> Iterator[RecordBatch]:
        """scan on every shard, merged as query_batches is."""
        return _until(cancel, self._batches("scan", expression, limit, order,
                                            self._options(include_superseded, fields, since, until),
                                            allow_partial, from_address, to_address))

    def scan(self, expression: str, **kw: Any) -> Iterator[Record]:
        return self._records(self.scan_batches(expression, **kw))

    def query_range_batches(self, psf: str, lo: Any, hi: Any, *, limit: int | None = None, order: str = "newest",
                            from_address: int | None = None, to_address: int | None = None,
                            include_superseded: bool = False, fields: Sequence[str] | None = None,
                            cancel: threading.Event | None = None,
                            allow_partial: bool | None = None) -> Iterator[RecordBatch]:
        return _until(cancel, self._batches("range", (psf, lo, hi), limit, order,
                                            {"include_superseded": include_superseded,
                                             "fields": list(fields) if fields else None},
                                            allow_partial, from_address, to_address))

    def query_range(self, psf: str, lo: Any, hi: Any, **kw: Any) -> Iterator[Record]:
        return self._records(self.query_range_batches(psf, lo, hi, **kw))

    def get(self, address: int) -> Record | None:
        """The record at a cluster address (Record.address of an answer)."""
        self._check_open()
        shard, local = addresses.decode(address)
        if not 0 <= shard < len(self._actors):
            return None
        got = self._get(shard, self._call(shard, "get", local))
        return None if got is None else Record(addresses.encode(shard, got[0]), got[1])

    # ---- counts ----
    # from_address / to_address (a window of log addresses on a store) have
    # no meaning across shards' logs: a cluster counts over windows of time
    # (since / until) instead. `cancel` is taken for the HTTP API's sake:
    # a count is a call per shard, not stopped midway.
    def _sum(self, kind: str, spec: Any, options: dict, allow_partial: bool | None,
             from_address: int | None, to_address: int | None) -> int:
        _no_address_window(from_address, to_address)
        return sum(c for c in self._all("count", kind, spec, options, partial=self._partial(allow_partial))
                   if c is not None)

    def count(self, psf: str, value: Any = True, *, from_address: int | None = None, to_address: int | None = None,
              include_superseded: bool = False, cancel: Any = None, since: Any = None, until: Any = None,
              allow_partial: bool | None = None) -> int:
        """How many records `query(psf, value)` gives: the shards' counts summed."""
        return self.count_all([(psf, value)], from_address=from_address, to_address=to_address,
                              include_superseded=include_superseded, since=since, until=until,
                              allow_partial=allow_partial)

    def count_all(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                  since: Any = None, until: Any = None, allow_partial: bool | None = None) -> int:
        opts = {"include_superseded": include_superseded, "since": since, "until": until}
        return self._sum("all", [tuple(c) for c in conditions], opts, allow_partial, from_address, to_address)

    def count_any(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                  since: Any = None, until: Any = None, allow_partial: bool | None = None) -> int:
        opts = {"include_superseded": include_superseded, "since": since, "until": until}
        return self._sum("any", [tuple(c) for c in conditions], opts, allow_partial, from_address, to_address)

    def count_range(self, psf: str, lo: Any, hi: Any, *, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                    allow_partial: bool | None = None) -> int:
        return self._sum("range", (psf, lo, hi), {"include_superseded": include_superseded}, allow_partial,
                         from_address, to_address)

    def group_count(self, psf: str, *, limit: int | None = None, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                    since: Any = None, until: Any = None,
                    allow_partial: bool | None = None) -> list[tuple[Any, int]]:
        """Values of a PSF and their record counts over every shard, largest
        first (ties by canonical bytes), exact (merge.top_values)."""
        _no_address_window(from_address, to_address)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidArgument(f"limit must be a non-negative integer, not {limit!r}")
        opts = {"include_superseded": include_superseded, "since": since, "until": until}
        partial = self._partial(allow_partial)

        def lists_of(size: int | None) -> list:
            return [x or [] for x in self._all("group_count", psf, size, opts, partial=partial)]

        if limit == 0:
            return []
        bucketed = self.psf(psf).bucket is not None if limit is not None else False
        if limit is None or bucketed:
            totals: dict = {}
            for pairs in lists_of(None):
                merge.add_counts(totals, pairs)
            return merge.sort_counts(totals)[:limit]

        def counts_of(missing: dict[int, list]) -> dict[int, list[int]]:
            refs = {s: self._call(s, "counts_of", psf, vs, opts) for s, vs in missing.items()}
            return {s: self._get(s, ref) for s, ref in refs.items()}

        return merge.top_values(len(self._actors), limit, max(2 * limit, limit + 10), lists_of, counts_of)

    # ---- keyed clusters ----
    def _key_shard(self, key: Any) -> int:
        if self.key is None:
            raise InvalidArgument("this cluster has no key (open it with key=...)")
        shard = self._router.shard_of_value(key)
        if shard is None:
            raise InvalidArgument(f"a key is a string or a number, not {key!r}")
        return shard

    def get_key(self, key: Any) -> Record | None:
        shard = self._key_shard(key)
        got = self._get(shard, self._call(shard, "get_key", key))
        return None if got is None else Record(addresses.encode(shard, got[0]), got[1])

    def delete_key(self, key: Any, *, durable: bool = False) -> bool:
        shard = self._key_shard(key)
        return self._get(shard, self._call(shard, "delete_key", key, durable, retries=0))

    # ---- upkeep ----
    def flush(self, durable: bool = True) -> None:
        self._all("flush", durable)

    def checkpoint(self) -> list:
        return self._all("checkpoint")

    def status(self) -> dict:
        """Every shard's health, node, records and disk."""
        out = []
        for i, info in enumerate(self._all("ping", partial=True)):
            out.append({"shard": i, "healthy": info is not None, **(info or {"node": self.map.nodes.get(i)})})
        return {"shards": out, "virtual_shards": self.map.virtual_shards, "key": self.key,
                "route_by": self.map.route_by, "records": sum(s.get("records", 0) for s in out)}

    def stats(self) -> dict:
        per = self._all("stats")
        return {"records": sum(s["records"] for s in per), "shards": per}

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, keep_shards: bool = False) -> None:
        """Close every shard's store and stop its actor (keep_shards=True:
        leave them serving, for another front); stops the Ray this front
        started."""
        if self._closed:
            return
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
            if self._started_ray:
                self._ray.shutdown()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _no_address_window(from_address: int | None, to_address: int | None) -> None:
    if from_address is not None or to_address is not None:
        raise InvalidArgument("a cluster counts over windows of time (since/until), not of addresses "
                              "(from_address/to_address): each shard has its own log")


def _until(cancel: threading.Event | None, batches: Iterator[RecordBatch]) -> Iterator[RecordBatch]:
    """The batches until `cancel` is set (the answer then ends early)."""
    if cancel is None:
        return batches
    return itertools.takewhile(lambda _: not cancel.is_set(), batches)


class _ShardActor(ShardServer):
    """ShardServer as Ray runs it: ping also names the node."""

    def ping(self) -> dict:
        import ray
        info = super().ping()
        info["node"] = ray.get_runtime_context().get_node_id()
        return info
