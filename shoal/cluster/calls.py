"""How the cluster front (front.py) calls its shards: one request per
shard through Ray, answers taken together, a shard's failure told apart
from its own errors, and the shards a query by routing value needs.
Cluster takes these methods from here; they use its actors (_actors), map,
router, pause (pause.py) and Ray module (_ray).

Must stay true:
  - A read that Ray could not deliver (its shard died) is retried
    READ_RETRIES times while Ray restarts the shard; writes are not retried
    (retries=0): a shard may have stored them before it died.
  - Every request a call sends is answered or let go (_let_go), so no
    error is reported as unhandled and close() can wait for them.
"""
from __future__ import annotations

import threading
from typing import Any

from ..errors import ShardUnavailable, StoreClosed

READ_RETRIES = 3          # a read in flight when its shard died is retried this often


class ShardCalls:
    def _call(self, shard: int, method: str, *args: Any, retries: int = READ_RETRIES):
        # One entry point, the arguments as one tuple: Ray serializes each
        # argument on its own, and a call's nine took ~0.1 ms more to send
        m = self._actors[shard].call
        if retries:
            m = m.options(max_task_retries=retries)
        return m.remote(method, args)

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

    def _all(self, method: str, *args: Any, partial: bool = False, route: tuple | None = None) -> list:
        """Call every shard at once (route=(kind, conditions): the shards
        that can hold that query's records, _shards_for); their answers in
        shard order (None for a shard that failed, with partial)."""
        self._check_open()
        with self._pause.shared():
            return self._all_held(method, args, partial, route)

    def _shards_for(self, kind: str, spec: Any) -> list[int]:
        """The shards that can hold a query's records: where a condition
        names a PSF defined as the cluster's routing expression (its key,
        or route_by; not bucketed) with a string or number value, only the
        shards that value's virtual shard was routed to (its owner, and on
        a routed cluster the shards that owned it before: past_owners);
        else every shard. routing.py sends every record whose routing value
        is that string or number there, and a record's PSF value is its
        routing value: no record with it is anywhere else."""
        every = list(range(len(self._actors)))
        text = self.map.key if self.map.key is not None else self.map.route_by
        if text is None or kind not in ("all", "any"):
            return every
        active = self._active()
        sets: list[set[int] | None] = []
        for psf, value in spec:
            reg = active.get(psf)
            if (reg is None or reg["definition"] != text or reg.get("bucket") is not None or reg.get("time")
                    or isinstance(value, bool) or not isinstance(value, (str, int, float))):
                sets.append(None)
                continue
            v = self._router.virtual_of_value(value)
            sets.append(None if v is None else {self.map.owners[v], *self.map.past_owners.get(v, ())})
        known = [x for x in sets if x is not None]
        if kind == "all" and known:
            return sorted(set.intersection(*known))
        if kind == "any" and sets and len(known) == len(sets):
            return sorted(set.union(*known))
        return every

    def _all_held(self, method: str, args: tuple, partial: bool, route: tuple | None = None) -> list:
        self._refresh()
        shards = list(range(len(self._actors))) if route is None else self._shards_for(*route)
        refs = [self._call(i, method, *args) for i in shards]
        try:
            out = self._ray.get(refs)  # one wait for all: the common case
            failed: list[int] = []
        except (self._ray.exceptions.RayActorError, self._ray.exceptions.RayTaskError):
            out, failed = [], []
            error: BaseException | None = None
            for i, ref in zip(shards, refs):  # which shard failed, and how (every answer taken)
                try:
                    out.append(self._get(i, ref))
                except ShardUnavailable as exc:
                    failed.append(i)
                    out.append(None)
                    if not partial and error is None:
                        error = exc
                except Exception as exc:  # noqa: BLE001 - the shard's own error (PSFNotFound, ...): raised below
                    out.append(None)
                    if error is None:
                        error = exc
            if error is not None:
                raise error
        self.last_shards = {"total": len(refs), "successful": len(refs) - len(failed), "failed": len(failed),
                            "failed_shards": failed}
        return out

    def _let_go(self, ref: Any, then: Any = None) -> None:
        """A request whose answer is no longer wanted: taken on a daemon
        thread, so an error it holds is not reported as unhandled (then()
        called once it is)."""
        def take() -> None:
            try:
                self._ray.get(ref, timeout=60)
            except Exception:  # noqa: BLE001 - nobody wants it
                pass
            finally:
                self._letting_go.discard(t)
            if then is not None:
                then()
        t = threading.Thread(target=take, daemon=True, name="shoal-let-go")
        self._letting_go.add(t)
        t.start()

    def _partial(self, allow_partial: bool | None) -> bool:
        return self.allow_partial if allow_partial is None else allow_partial

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the cluster front was closed")
