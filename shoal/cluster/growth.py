"""Growing and shrinking a cluster: shards added (add_shards), virtual
shards evened out over the shards (rebalance), and a keyed cluster's
highest-numbered shards removed (remove_shards). Cluster (front.py) takes
these methods from here; a keyed cluster's keys are moved by mover.py,
while every front's calls wait (pause.py).

Removing shards, in steps that a front which dies midway leaves to the
next front that opens the cluster (the map names the shards `retiring`):
  1. the map lists the retiring shards and the move of their virtual
     shards to the others (mover.py's journal), in one write;
  2. their keys move (copied durably, switched, deleted where they were);
  3. the map's shard count drops below them: no call goes to them again;
  4. each deletes its store's directory and is stopped; the map forgets them.

Must stay true:
  - Only a keyed cluster removes shards: its records are its keys' live
    versions, each on the shard its virtual shard names, so moving the
    virtual shards moves every record a query answers. A spreading or
    routed cluster keeps records of any value on every shard, in an order
    by arrival that a move could not keep.
  - A shard is stopped only once it owns no virtual shard and the map no
    longer counts it.
"""
from __future__ import annotations

from ..errors import InvalidArgument, ShoalError
from . import mover, shardmap

PLACE_TIMEOUT = 120.0     # seconds Ray has to start a new shard before add_shards gives up
PAUSE_TIMEOUT = 60.0      # seconds a move waits for every front's calls out to end (pause.py)


class ClusterGrowth:
    def add_shards(self, count: int, *, shard_cpus: float = 1.0, pause_timeout: float = PAUSE_TIMEOUT) -> None:
        """Add `count` shards, then spread the work over them (rebalance):
        a spreading cluster sends its later pieces to every shard in turn;
        a routed one sends the later records of the virtual shards the new
        shards take to them (earlier ones stay where they are: every query
        asks every shard); a keyed one moves those virtual shards' keys to
        the new shards (copied, switched, then deleted where they were), so
        a key's versions stay on one shard."""
        self._check_open()
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidArgument(f"count must be a positive integer, not {count!r}")
        with self._changing_map():
            m = self.map
            n = m.shards
            shardmap.check_counts(n + count, m.virtual_shards)
            if m.move is not None or m.retiring:
                raise InvalidArgument("a move of records between shards is unfinished: rebalance() first")
            new = [self._actor(i, shard_cpus) for i in range(n, n + count)]
            infos = self._placed(new, shard_cpus)
            if m.psfs:  # the PSFs every shard has, from the new shards' first record
                self._ray.get([a.apply_psfs.remote(m.psfs) for a in new])
            for i, info in zip(range(n, n + count), infos):
                m.nodes[i] = info["node"]
            m.shards = n + count
            self._actors.extend(new)
            if m.key is None and m.route_by is None:
                m.owners[:] = [v % m.shards for v in range(m.virtual_shards)]
                self._save_map()  # the switch: pieces cut from now on may go to the new shards
                return
            self._save_map()  # the new shards, owning nothing yet
            self._rebalance_locked(pause_timeout)

    def _placed(self, actors: list, cpus: float) -> list[dict]:
        """The new shards' pings, once Ray has placed them; shards Ray
        cannot place within PLACE_TIMEOUT (too few CPUs free) are stopped
        and the call fails saying so, the map unchanged."""
        try:
            return self._ray.get([a.ping.remote() for a in actors], timeout=PLACE_TIMEOUT)
        except self._ray.exceptions.GetTimeoutError:
            for a in actors:
                self._ray.kill(a, no_restart=True)
            free = self._ray.available_resources().get("CPU", 0.0)
            raise ShoalError(f"Ray could not start {len(actors)} more shards within {PLACE_TIMEOUT:g} s: each "
                             f"asks {cpus:g} CPU and the Ray cluster has {free:g} free; add nodes (ray start "
                             f"--address ...) or pass a smaller shard_cpus (--shard-cpus)") from None

    def rebalance(self, *, pause_timeout: float = PAUSE_TIMEOUT) -> dict[int, tuple[int, int]]:
        """Give every shard of a keyed or routed cluster an even share of
        the virtual shards (or finish a move that was cut short); returns
        the moves made, {virtual shard: (from, to)}. On a keyed cluster the
        keys of each moved virtual shard are copied to their new shard
        (durably), the map is switched, then they are deleted where they
        were; every front's ingest and reads wait meanwhile (pause.py), so
        no answer sees a key twice or not at all. A move cut short by a
        crash is finished by the next front that opens the cluster.
        Records moved take their new shard's place in cluster order (as a
        keyed store's compaction moves live records to its tail)."""
        self._check_open()
        with self._changing_map():
            return self._rebalance_locked(pause_timeout)

    def _rebalance_locked(self, pause_timeout: float) -> dict[int, tuple[int, int]]:
        m = self.map
        if m.key is None and m.route_by is None:
            return {}  # a spreading cluster routes nothing
        if m.move is None:
            moves = m.plan_moves()
            if not moves:
                if m.retiring:  # their keys moved; a front died before they were stopped
                    self._retire(pause_timeout)
                return {}
            if m.key is None:  # routed: later records go to the new owner, earlier ones stay
                for v, (src, to) in moves.items():
                    m.owners[v] = to
                    past = m.past_owners.setdefault(v, [])
                    if src not in past:
                        past.append(src)
                self._save_map()
                return moves
            m.move = {"state": "copying", "moves": {str(v): list(ft) for v, ft in moves.items()}}
        moves = {int(v): (int(f), int(t)) for v, (f, t) in m.move["moves"].items()}
        with self._pause.exclusive(pause_timeout):
            self._save_map()  # the move's journal: a front that finds it finishes it
            try:
                mover.run(self, moves)
            except Exception as exc:  # noqa: BLE001 - said below, with what became of the move
                became = mover.settle(self, moves)
                if became is not None:
                    if m.retiring and m.move is None:  # undone: the removal with it
                        m.retiring = []
                        self._save_map()
                    raise ShoalError(f"moving keys between shards failed ({type(exc).__name__}: {exc}); the "
                                     f"move was {became}") from exc
        if m.retiring:
            self._retire(pause_timeout)
        return moves

    def remove_shards(self, count: int, *, pause_timeout: float = PAUSE_TIMEOUT) -> dict[int, tuple[int, int]]:
        """Remove the `count` highest-numbered shards of a keyed cluster:
        their virtual shards, and with them their live keys, move to the
        other shards (evenly, as rebalance moves them), then each removed
        shard deletes its store and is stopped. Superseded versions and
        tombstones on a removed shard go with it. Returns the moves made.
        A spreading or routed cluster refuses (module docstring)."""
        self._check_open()
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidArgument(f"count must be a positive integer, not {count!r}")
        with self._changing_map():
            m = self.map
            if m.key is None:
                raise InvalidArgument("only a keyed cluster removes shards: a spreading or routed cluster keeps "
                                      "records of any value on every shard, in an order a move could not keep")
            if count >= m.shards:
                raise InvalidArgument(f"the cluster has {m.shards} shards: remove at most {m.shards - 1}")
            if m.move is not None or m.retiring:
                raise InvalidArgument("a move of records between shards is unfinished: rebalance() first")
            m.retiring = list(range(m.shards - count, m.shards))
            return self._rebalance_locked(pause_timeout)

    def _retire(self, pause_timeout: float) -> None:
        """Steps 3 and 4 (module docstring) for the map's retiring shards,
        which own no virtual shard now; with the map lock held."""
        m = self.map
        gone = sorted(m.retiring)
        if any(o in gone for o in m.owners):  # never: the move gave their virtual shards away
            raise ShoalError(f"shards {gone} still own virtual shards; rebalance() finishes their move")
        with self._pause.exclusive(pause_timeout):
            m.shards = min(gone)
            self._save_map()  # no call goes to them from here on
            actors = [self._actors[s] if s < len(self._actors) else self._actor(s, 0) for s in gone]
            del self._actors[m.shards:]
            self._ray.get([a.call.remote("retire", ()) for a in actors])
            for a in actors:
                self._ray.kill(a, no_restart=True)
            for s in gone:
                m.nodes.pop(s, None)
            m.retiring = []
            self._save_map()

