"""The PSF registry: names, ids, definitions, and the log ranges in which each
PSF was active (and so indexed).

Invariants:
* A PSF's ranges are sorted, disjoint, non-empty half-open log address ranges
  [from, to); only the last may be open (to is None), and it is open exactly
  while the PSF is active. Adjacent ranges are merged. Outside its ranges a
  PSF indexed nothing: answers scan there. So forgetting a range is always
  safe (the records there are scanned instead); claiming one never is.
* A name maps to at most one PSF. Re-registering a deregistered name with the
  same definition resumes the same id with a new range: the same expression
  text, or, for a callable, the same fields and the same `fingerprint` (see
  `callable_fingerprint`: code, constants, defaults and closure values, so
  the same function defined again after a restart matches, and an edited one
  does not). A different definition retires the old PSF (kept in `retired()`
  and `by_id` for diagnostics, while the bound below allows) and starts a
  new id with a fresh history, so records indexed by the old definition
  never answer for the new.
* Every PSF the registry holds (active, deregistered, retired) has its own
  psf_id, below SHOAL_MAX_KPS (16 bits in a key pointer). New ids come from
  a counter (`next_id`, persisted), so ids are not reused while any is
  fresh; once all were used, a new PSF takes the lowest id no held PSF has.
* Every change is saved atomically before the call returns.

Bounds (so that register/deregister churn cannot grow psfs.json or use up
the ids): at most `max_active` PSFs are active (TooManyPSFs beyond). At most
`max_inactive` deregistered and retired PSFs are kept: beyond, one is
forgotten (its name freed, its id free for reuse), retired ones first, then
those that indexed no record, then the one deregistered longest ago. A PSF
keeps its newest MAX_RANGES ranges (an older one is forgotten: its records
are scanned instead), and ranges wholly below the log's begin address
(compacted away: no query reaches them) are dropped.

Why reusing a psf_id is safe. Key pointers carry the psf_id, and an index
entry's chain mixes every PSF's key pointers whose (psf_id, value) hash
alike, so a chain walk for a reused id could meet key pointers the id's
earlier owner wrote. But key pointers of an id are written only while the
PSF holding it is active, and a PSF is forgotten only once inactive, before
any later PSF takes its id: every key pointer of an earlier owner lies below
the start of the new owner's first range. Queries walk a PSF's chains only
from the start of its first range on (store/query.py) and scan below it, so
they never meet them. (After a crash that loses the log's tail, a range that
restarts lower, see `truncate`, starts at the recovered tail: the log above
it, with any key pointers there, is gone.)

Name rules: a str of 1..128 characters without control characters (Unicode
category Cc: U+0000-U+001F, U+007F-U+009F) or surrogates. Breaking them
raises InvalidArgument (HTTP: 422) stating the rule: a name is an argument,
not part of the definition. Anything else is a name, `/`, `..` and `%`
included: a name is never part of a file path (the registry is one JSON
file, psfs.json), only of URL paths, percent-encoded.

Expression limits: `register` parses with the registry's ExpressionLimits
and refuses a definition over them. A saved PSF over the limits of this
open (they are per open, and may have been lowered) is loaded as it was,
but with `failure` saying why, a WARNING in the log, and no expression: it
indexes nothing (like a record over its budget, it yields no value) until
the store is reopened with limits that admit it, or it is deregistered. The
store opens either way.

Callables cannot be persisted. After a reload such a PSF has `func is None`
and `needs_callable`; the store calls `close_open_callables(address)` at
reopen so that no range claims records were indexed without the function.

Concurrency: methods take an internal lock, so calls from several threads are
serialized; the store decides which address each change happens at.
"""
from __future__ import annotations

import json
import math
import logging
import pathlib
import threading
from typing import Any, Callable, Iterable

from .._native import lib
from ..config import ExpressionLimits
from ..files import TEMP_SUFFIX, fsync_dir, replace_file
from ..errors import (CorruptionError, InvalidArgument, PSFDefinitionError, PSFError, PSFExists, PSFNotFound,
                      NativeIOError, TooManyPSFs)
from .entry import PSF, Range, _shown, callable_fingerprint, check_name
from .expr import Expression, parse_definition
from .kinds import PSFKind

__all__ = ["Registry", "MAX_RANGES"]

# Ranges a PSF keeps (its newest): one more per re-registration after records
# arrived while it was inactive.
MAX_RANGES = 64
# psf_ids there are: 0 .. SHOAL_MAX_KPS - 1 (SHOAL_KEY_PSF_ID, a keyed store's
# key, is the next); tests lower it to make ids run out soon.
_ID_SPACE: int = lib.SHOAL_MAX_KPS
_FORMAT_VERSION = 1

log = logging.getLogger(__name__)

def _check_bucket(bucket: Any, time: bool, expression: Any) -> float | None:
    """A bucket width: a positive finite number, for an expression the C core
    evaluates (the bucket is taken in C at ingest: _native/bucket.c)."""
    if not isinstance(time, bool):
        raise InvalidArgument("time must be true or false")
    if bucket is None:
        if time:
            raise InvalidArgument("a time PSF needs a bucket width in seconds (bucket=60: one per minute)")
        return None
    if isinstance(bucket, bool) or not isinstance(bucket, (int, float)) or not math.isfinite(bucket) or bucket <= 0:
        raise InvalidArgument(f"bucket must be a positive number, not {bucket!r}")
    if expression is None or not expression.native:
        why = "a callable" if expression is None else expression.why_not_native
        raise InvalidArgument(f"a bucketed PSF must be a path or expression the C core evaluates ({why}); "
                              f"e.g. register_psf('size', 'payload.size', bucket=100)")
    return float(bucket)


def _check_address(address: Any) -> int:
    if isinstance(address, bool) or not isinstance(address, int) or address < 0:
        raise InvalidArgument(f"address must be a non-negative int, not {address!r}")
    return address


def _parse_fields(fields: Iterable[str] | None, limits: ExpressionLimits | None = None,
                  ) -> tuple[tuple[str, ...] | None, tuple[Expression, ...] | None]:
    if fields is None:
        return None, None
    if isinstance(fields, str):
        raise InvalidArgument("fields must be a list of expressions, not a str")
    texts = tuple(fields)
    for f in texts:
        if not isinstance(f, str):
            raise InvalidArgument(f"each field must be a JMESPath str, not {type(f).__name__}")
    return texts, tuple(parse_definition(f, limits) for f in texts)


class Registry:
    """All PSFs of one store, persisted as JSON at `path` (None: in memory)."""

    def __init__(self, path: pathlib.Path | str | None = None, limits: ExpressionLimits | None = None, *,
                 max_active: int = 1024, max_inactive: int = 1024):
        self.path = pathlib.Path(path) if path is not None else None
        self.limits = limits if limits is not None else ExpressionLimits()
        self.max_active = max_active
        self.max_inactive = max_inactive
        self._lock = threading.RLock()
        self._next_id = 0
        self._by_name: dict[str, PSF] = {}
        self._by_id: dict[int, PSF] = {}
        self._retired: dict[int, PSF] = {}
        if self.path is not None:
            # A save cut short by a crash leaves its temp file: remove it
            # (and those of versions that named them at random).
            for tmp in [*self.path.parent.glob(self.path.name + ".*.tmp"), self.path.with_name(self.path.name + TEMP_SUFFIX)]:
                tmp.unlink(missing_ok=True)
            if self.path.exists():
                self._load()

    # ---- queries ------------------------------------------------------------

    def get(self, name: str) -> PSF:
        """The PSF registered under `name` (active or not); PSFNotFound if none."""
        psf = self._by_name.get(name)  # one dict read: atomic, no lock needed
        if psf is None:
            raise PSFNotFound(f"no PSF named {name!r}")
        return psf

    def by_id(self, psf_id: int) -> PSF | None:
        """The PSF with this id, retired ones included; None if unknown (or
        forgotten)."""
        with self._lock:
            return self._by_id.get(psf_id)

    def active(self) -> list[PSF]:
        """Active PSFs, by id."""
        with self._lock:
            return sorted((p for p in self._by_name.values() if p.active), key=lambda p: p.id)

    def all(self) -> list[PSF]:
        """Every PSF that holds a name, active or not, by id."""
        with self._lock:
            return sorted(self._by_name.values(), key=lambda p: p.id)

    def retired(self) -> list[PSF]:
        """PSFs whose name was taken over by a different definition."""
        with self._lock:
            return sorted(self._retired.values(), key=lambda p: p.id)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._by_name

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_name)

    # ---- changes ------------------------------------------------------------

    def register(self, name: str, definition: str | Callable[..., Any], *,
                 fields: Iterable[str] | None = None, address: int, begin: int = 0,
                 exist_ok: bool = False, replace: bool = False, bucket: float | None = None,
                 time: bool = False) -> PSF:
        """Activate a PSF from log address `address` on (`begin`: the log's
        begin address; ranges below it are dropped). Raises PSFExists if
        `name` is active, TooManyPSFs if `max_active` are, PSFDefinitionError
        for a bad expression, InvalidArgument for bad arguments.

        `name` active with the same definition: with exist_ok (or replace)
        that PSF is returned unchanged (no new range, nothing saved).
        `name` active with another definition: PSFExists, unless replace,
        which deregisters it at `address` and registers the new definition
        from `address` on, in one change (one save: both or neither)."""
        check_name(name)
        address = _check_address(address)
        if isinstance(definition, str):
            if fields is not None:
                raise InvalidArgument("fields apply only to callable definitions")
            expression = parse_definition(definition, self.limits)
            field_texts, field_exprs, func = None, None, None
            kind = expression.kind
        elif callable(definition):
            expression, func = None, definition
            field_texts, field_exprs = _parse_fields(fields, self.limits)
            kind = PSFKind.CALLABLE
        else:
            raise InvalidArgument(
                f"a PSF definition must be a JMESPath str or a callable, not {type(definition).__name__}"
            )
        fingerprint = callable_fingerprint(func) if func is not None else None
        bucket = _check_bucket(bucket, time, expression)
        with self._lock:
            snap = self._snapshot()
            old = self._by_name.get(name)
            replacing = False
            if old is not None and old.active:
                if self._same_definition(old, definition, field_texts, fingerprint, bucket, time) and (
                        exist_ok or replace):
                    return old
                if not replace:
                    raise PSFExists(f"PSF {name!r} is already active, defined as {_shown(old)}; to "
                                    f"change it, deregister it first (or register with replace)",
                                    name=name, definition=old.definition)
                replacing = True
            n_active = sum(1 for p in self._by_name.values() if p.active) - replacing
            if n_active >= self.max_active:
                raise TooManyPSFs(f"{n_active} PSFs are active, the most this store allows (max_active_psfs="
                                  f"{self.max_active}); deregister one first", limit=self.max_active)
            if replacing:  # undone with the rest by _save_locked(snap) if the save fails
                assert old is not None
                self._close_locked(old, address)
            self._drop_below_locked(begin)
            if old is not None and self._same_definition(old, definition, field_texts, fingerprint, bucket, time):
                last_end = old.ranges[-1][1] if old.ranges else None
                if last_end is not None and address < last_end:
                    raise InvalidArgument(
                        f"address {address} is before PSF {name!r} was deregistered ({last_end})"
                    )
                if last_end == address:
                    old.ranges[-1] = (old.ranges[-1][0], None)
                else:
                    old.ranges.append((address, None))
                    del old.ranges[:-MAX_RANGES]  # the oldest: scanned from now on
                old.func = func
                old.field_expressions = field_exprs
                if old.failure is not None:  # parsed above: the limits admit it now
                    old.expression, old.failure = expression, None
                self._save_locked(snap)
                return old
            if old is not None:
                self._retired[old.id] = old
                del self._by_name[name]
            self._forget_overflow_locked()
            psf = PSF(
                id=self._new_id_locked(), name=name,
                definition=definition if isinstance(definition, str) else None,
                kind=kind, fields=field_texts, ranges=[(address, None)],
                expression=expression, func=func, field_expressions=field_exprs,
                fingerprint=fingerprint, bucket=bucket, time=time,
            )
            self._by_name[name] = psf
            self._by_id[psf.id] = psf
            self._save_locked(snap)
            return psf

    def deregister(self, name: str, address: int, begin: int = 0) -> PSF:
        """Stop indexing `name` from log address `address` on (`begin`: as
        for register). PSFNotFound if no PSF has that name or it is not
        active. Returns the PSF, also when the bound on inactive PSFs made
        the registry forget it (or another) at once."""
        address = _check_address(address)
        with self._lock:
            psf = self._by_name.get(name)
            if psf is None or not psf.active:
                raise PSFNotFound(f"no active PSF named {name!r}")
            snap = self._snapshot()
            self._close_locked(psf, address)
            self._drop_below_locked(begin)
            self._forget_overflow_locked()
            self._save_locked(snap)
            return psf

    def close_open_callables(self, address: int) -> list[PSF]:
        """At reopen: close the open range of every callable PSF whose function
        was lost with the previous process. Returns those PSFs."""
        address = _check_address(address)
        with self._lock:
            closed = [p for p in self._by_name.values() if p.active and p.needs_callable]
            for psf in closed:
                self._close_locked(psf, address)
            if closed:
                self._save_locked()
            return sorted(closed, key=lambda p: p.id)

    def truncate(self, address: int) -> None:
        """After recovery found the log ends at `address`: no record at or past
        it exists any more, so clip every range to it. An open range that began
        past it restarts at `address` (its PSF is active for new records)."""
        address = _check_address(address)
        with self._lock:
            changed = False
            for psf in list(self._by_id.values()):
                new: list[Range] = []
                for a, b in psf.ranges:
                    if b is None:
                        a, b = min(a, address), None
                    elif a < address:
                        b = min(b, address)
                    else:
                        continue
                    if new and new[-1][1] == a:  # keep adjacent ranges merged
                        a = new.pop()[0]
                    new.append((a, b))
                if new != psf.ranges:
                    psf.ranges[:] = new
                    changed = True
            if changed:
                self._save_locked()

    def save(self) -> None:
        """Write the registry atomically (every change already does)."""
        with self._lock:
            self._save_locked()

    # ---- internals ----------------------------------------------------------

    @staticmethod
    def _same_definition(old: PSF, definition: Any, field_texts: tuple[str, ...] | None,
                         fingerprint: str | None, bucket: float | None = None, time: bool = False) -> bool:
        if (old.bucket, old.time) != (bucket, time):
            return False
        if isinstance(definition, str):
            return old.kind is not PSFKind.CALLABLE and old.definition == definition
        return (old.kind is PSFKind.CALLABLE and old.fields == field_texts
                and fingerprint is not None and old.fingerprint == fingerprint)

    def _new_id_locked(self) -> int:
        """A fresh id while there are any, then the lowest no held PSF has
        (one is free: the bounds keep fewer PSFs than ids)."""
        if self._next_id < _ID_SPACE:
            self._next_id += 1
            return self._next_id - 1
        for i in range(_ID_SPACE):
            if i not in self._by_id:
                return i
        raise PSFError(f"all {_ID_SPACE} PSF ids are held")  # the bounds make this unreachable

    def _drop_below_locked(self, begin: int) -> None:
        """Drop closed ranges wholly below the log's begin address: their
        records were compacted away, no query reaches them."""
        for p in self._by_id.values():
            if p.ranges and p.ranges[0][1] is not None and p.ranges[0][1] <= begin:
                p.ranges[:] = [r for r in p.ranges if r[1] is None or r[1] > begin]

    def _forget_overflow_locked(self) -> None:
        """Forget inactive PSFs beyond `max_inactive`: retired ones first,
        then those with no ranges (they indexed nothing a query can reach),
        then the one whose last range ended first (deregistered longest ago)."""
        inactive = [p for p in self._by_id.values() if not p.active]
        over = len(inactive) - self.max_inactive
        if over <= 0:
            return
        def age(p: PSF) -> tuple:
            retired = p.id in self._retired
            return (not retired, p.ranges[-1][1] if p.ranges else -1, p.id)
        for p in sorted(inactive, key=age)[:over]:
            del self._by_id[p.id]
            if self._retired.pop(p.id, None) is None:
                del self._by_name[p.name]

    @staticmethod
    def _close_locked(psf: PSF, address: int) -> None:
        start = psf.ranges[-1][0]
        if address < start:
            raise InvalidArgument(
                f"address {address} is before PSF {psf.name!r} was registered ({start})"
            )
        if address == start:
            psf.ranges.pop()  # active for no record at all
        else:
            psf.ranges[-1] = (start, address)

    def _to_json(self) -> dict:
        def row(p: PSF) -> dict:
            return {
                "id": p.id, "name": p.name, "kind": p.kind.value,
                "definition": p.definition,
                "fields": list(p.fields) if p.fields is not None else None,
                "fingerprint": p.fingerprint,
                "ranges": [[a, b] for a, b in p.ranges],
                **({"bucket": p.bucket, "time": p.time} if p.bucket is not None else {}),
            }
        return {
            "version": _FORMAT_VERSION,
            "next_id": self._next_id,
            "psfs": [row(p) for p in sorted(self._by_name.values(), key=lambda p: p.id)],
            "retired": [row(p) for p in sorted(self._retired.values(), key=lambda p: p.id)],
        }

    def _snapshot(self) -> tuple:
        """What a change may alter, for `_restore` when saving it fails."""
        psfs = {id(p): p for p in (*self._by_id.values(), *self._retired.values())}.values()
        return (dict(self._by_name), dict(self._by_id), dict(self._retired), self._next_id,
                [(p, list(p.ranges), p.func, p.field_expressions) for p in psfs])

    def _restore(self, snap: tuple) -> None:
        by_name, by_id, retired, next_id, states = snap
        for p, ranges, func, field_expressions in states:
            p.ranges[:] = ranges
            p.func = func
            p.field_expressions = field_expressions
        self._by_name, self._by_id, self._retired, self._next_id = by_name, by_id, retired, next_id

    def _save_locked(self, snap: tuple | None = None) -> None:
        """Write the registry atomically. If that fails before the new file
        replaced the old one (disk full while writing it), the change is
        undone in memory too, from `snap`, so memory never claims a PSF
        indexes records it does not (the store compiles what is in memory).
        A failure after the replace (the directory's fsync) keeps it: the
        file most likely holds it."""
        if self.path is None:
            return
        data = json.dumps(self._to_json(), indent=1, ensure_ascii=False).encode()
        try:
            replace_file(self.path, data)
        except NativeIOError:  # disk full, I/O error (naming the file): the old file stands
            if snap is not None:
                self._restore(snap)
            raise
        fsync_dir(self.path.parent)

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_bytes())
            if data.get("version") != _FORMAT_VERSION:
                raise CorruptionError(f"{self.path}: unknown registry version {data.get('version')!r}")
            self._next_id = int(data["next_id"])
            for row, retired in [(r, False) for r in data["psfs"]] + [(r, True) for r in data["retired"]]:
                psf = self._psf_from_row(row)
                # ids below next_id were handed out (all of them, once it reached _ID_SPACE)
                if not 0 <= psf.id < min(self._next_id, _ID_SPACE) or psf.id in self._by_id:
                    raise CorruptionError(f"{self.path}: bad or duplicate PSF id {psf.id}")
                self._by_id[psf.id] = psf
                if retired:
                    self._retired[psf.id] = psf
                elif psf.name in self._by_name:
                    raise CorruptionError(f"{self.path}: duplicate PSF name {psf.name!r}")
                else:
                    self._by_name[psf.name] = psf
        except CorruptionError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, PSFError) as exc:
            raise CorruptionError(f"{self.path}: unreadable PSF registry: {exc}") from exc

    def _psf_from_row(self, row: dict) -> PSF:
        kind = PSFKind(row["kind"])
        ranges: list[Range] = [(int(a), None if b is None else int(b)) for a, b in row["ranges"]]
        fields = tuple(row["fields"]) if row.get("fields") is not None else None
        bucket = row.get("bucket")
        psf = PSF(id=int(row["id"]), name=row["name"], definition=row["definition"],
                  kind=kind, fields=fields, ranges=ranges, fingerprint=row.get("fingerprint"),
                  bucket=None if bucket is None else float(bucket), time=bool(row.get("time", False)))
        try:
            if kind is PSFKind.CALLABLE:
                psf.field_expressions = _parse_fields(fields, self.limits)[1]
            else:
                psf.expression = parse_definition(row["definition"], self.limits)
        except PSFDefinitionError as exc:
            # Saved under other limits (or by an older shoal): keep the store
            # opening; the PSF is there, named, and says why it indexes nothing.
            psf.failure = str(exc)
            log.warning("PSF %r (id %d) indexes nothing in this open: %s", psf.name, psf.id, exc)
        return psf
