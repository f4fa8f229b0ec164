"""The Elasticsearch bulk protocol: what POST /_bulk does to a store.

A bulk body is NDJSON: an action line (`{"index": {...}}`, `create`,
`delete` or `update`), then, for every action but delete, a source line.
`apply()` runs the items in order against a Store and returns
Elasticsearch's answer, `{"took", "errors", "items"}`: one item per action
with its own status, so a record shoal rejects fails alone and the others
are stored. Runs of index/create items go to the store as one ingest call
(the records framed, validated and indexed in C); a delete or update
between them waits for the run before it, so items take effect in order.

What is kept of an item's metadata:

  _index   (or the {index} of the path) is added to the stored record as
           its first member, named `index_field` ("_index"); the source's
           own bytes follow unchanged. index_field=None stores the source
           byte for byte and keeps no index name. A source that has a
           top-level field of that name already is refused, as
           Elasticsearch refuses its metadata fields in a source.
  _id      unkeyed store: not kept; the answer's _id is the record's log
           address (GET /records/{address} reads it back), or the _id sent.
           Keyed store: the key. A source holding its key field keeps it
           (the key field wins; the answer's _id is that key); one without
           it gets the key field set to _id, when the key is a plain field
           name. delete and update need a keyed store; _id "7" finds a
           string key "7", else the number 7.

Everything else (routing, pipeline, version, if_seq_no, require_alias,
retry_on_conflict, dynamic_templates, ...) is accepted and ignored.

Why this file is long: the protocol is one piece of state (the items'
answers in order, the run of records not yet stored, the keys it creates)
that two paths share: the whole-body path for the common body and the
item-by-item path for any other, which keyed stores' create, delete and
update need; split, each half would reach into the other's state.
"""
from __future__ import annotations

import collections
import itertools
import re
import time
from dataclasses import dataclass
from typing import Any

import jmespath
import orjson

from ..engine import Store
from ..errors import InvalidArgument

INDEX_FIELD = "_index"
ACTIONS = ("index", "create", "delete", "update")
MAX_ID_BYTES = 512  # Elasticsearch's limit on _id
# Items one request may hold. The answer names each (~160 bytes), so a body
# of tiny items would otherwise answer with 10x its own size; shippers send
# far fewer (Filebeat 1,600 a request, Logstash 125 a batch).
MAX_ITEMS = 100_000
MAX_INDEX_BYTES = 255
# A run of index/create items goes to the store in calls of at most this
# many records, so every rejected one's reason is reported (the store lists
# max_reported_errors of them per call).
RUN_RECORDS = 1000
_PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})\Z")
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')
_SPACE_OR_CLOSE = (b"}", b" ", b"\t", b"\r", b"\n", b"")
_SHARDS = {"total": 1, "successful": 1, "failed": 0}


class BulkError(Exception):
    """The whole request is refused (Elasticsearch answers such a body 400
    as a whole: its lines cannot be paired)."""

    def __init__(self, status: int, type_: str, reason: str):
        super().__init__(reason)
        self.status, self.type, self.reason = status, type_, reason

    def body(self) -> dict:
        cause = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def check_index(name: str) -> str | None:
    """Why `name` is not a usable index name, or None (Elasticsearch's rules)."""
    if not name:
        return "must not be empty"
    if name != name.lower():
        return "must be lowercase"
    if name.startswith(("_", "-", "+")):
        return "must not start with '_', '-', or '+'"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    bad = sorted(set(name) & _BAD_INDEX_CHARS)
    if bad:
        return f"must not contain {' '.join(repr(c) for c in bad)}"
    if len(name.encode()) > MAX_INDEX_BYTES:
        return f"is longer than {MAX_INDEX_BYTES} bytes"
    return None


@dataclass(slots=True)
class _Item:
    op: str
    index: str
    id: str | None
    line: int            # the action's line in the body (1-based)
    source: bytes | None = None
    key: Any = None      # keyed stores: the record's key, when known


class _Keys:
    """A keyed store's key as bulk items need it."""

    def __init__(self, store: Store):
        self.expr = store.key
        self.compiled = jmespath.compile(store.key)
        self.field = store.key if _PLAIN_FIELD.match(store.key) else None

    def of(self, doc: Any) -> Any:
        try:
            v = self.compiled.search(doc)
        except Exception:  # noqa: BLE001 - a key that cannot be read is no key
            return None
        return v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None


class Bulk:
    """One bulk request's items applied to a store (see the module docstring)."""

    def __init__(self, store: Store, *, index: str | None = None, index_field: str | None = INDEX_FIELD,
                 durable: bool = False):
        self.store = store
        self.default_index = index
        self.index_field = index_field
        self.field_key = orjson.dumps(index_field) if index_field else b""
        self.durable = durable
        self.keys = _Keys(store) if store.key is not None else None
        self.items: list[dict] = []
        self.errors = False
        self.ingested = self.rejected = self.input_bytes = 0
        self._run: list[tuple[int, _Item]] = []   # the run of index/create items: (position in items, item)
        self._parts: list = []                    # its records' NDJSON, in pieces joined once
        self._pending_keys: set = set()           # keys the run creates, not yet stored
        self._actions: dict[bytes, tuple] = {}    # action line -> parsed (most bodies repeat a few)
        self._members: dict[str, bytes] = {}      # index -> its member, '"_index":"name"'

    # ---- the body ----
    def apply(self, body: bytes) -> dict:
        t0 = time.monotonic()
        lines = body.split(b"\n")
        if lines[-1].strip() == b"":  # what follows the last newline is no line
            lines.pop()
        if len(lines) > 2 * MAX_ITEMS:  # an answer names every item: bounded, as the body is
            raise BulkError(413, "illegal_argument_exception",
                            f"the body holds more than {MAX_ITEMS:,} items (its {len(lines):,} lines), the most one "
                            f"bulk request takes; send them in several requests")
        if not self._runs(body, lines):
            self._items(lines)
        self._flush()
        return {"took": int((time.monotonic() - t0) * 1000), "errors": self.errors, "items": self.items}

    def _runs(self, body: bytes, lines: list[bytes]) -> bool:
        """The common body whole, without a step per item in Python: on an
        unkeyed store, action/source pairs (no blank lines) whose actions
        are all valid index or create lines and whose sources all open with
        '{"' (an object with a member, nothing before it), none holding a CR
        or the index field's name (anywhere: those are looked at one by one). The body is checked at once: each line
        holds at most one '\\n{"', at its start, so counting them counts the
        lines that open so. Each run of one repeated action line then goes
        to the store as one NDJSON text made by one join, and its answers
        are filled from a template. False when the body is not of that shape
        (nothing done)."""
        if self.keys is not None or len(lines) % 2 or b"\r" in body:
            return False
        actions, sources = lines[0::2], lines[1::2]
        times = collections.Counter(actions)
        if self.index_field and body.count(self.field_key) != sum(a.count(self.field_key) * m
                                                                  for a, m in times.items()):
            return False  # a source names the field (the action lines' "_index" are counted out)
        parsed = {}
        for a in times:
            if not a.startswith(b'{"'):
                return False
            try:
                got = self._action(a, 0)
            except BulkError:
                return False  # the item-by-item path says where
            if got[0] not in ("index", "create") or got[3] is not None:
                return False
            parsed[a] = got
        if body.count(b'\n{"') != len(actions) - 1 + len(sources):
            return False
        i = 0
        for action, group in itertools.groupby(actions):
            k = sum(1 for _ in group)
            self._run_of(parsed[action], sources[i:i + k], 2 * i + 1)
            i += k
        return True

    def _run_of(self, action: tuple, sources: list[bytes], first_line: int) -> None:
        op, index, _id, _ = action
        if self.index_field:
            # '\\n{"_index":"name",' + each source after its brace; the text
            # opens with a newline (a blank line, which the store skips)
            sep = b"\n{" + self._index_member(index) + b","
            text = sep.join([b""] + [memoryview(src)[1:] for src in sources])
        else:
            text = b"\n".join(sources)
        self._flush()  # the items before this run first
        result, addrs = self._store(text, len(sources))
        head = b'{"%s":{"_index":%s,"_id":' % (op.encode(), orjson.dumps(index))
        tail = b',"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":%d,' \
               b'"_primary_term":1,"status":201}}'
        if _id is None:
            template = head + b'"%d"' + tail
            answers = [orjson.Fragment(template % (a, a)) if a else None for a in addrs]
        else:
            template = head + orjson.dumps(_id) + tail
            answers = [orjson.Fragment(template % a) if a else None for a in addrs]
        if result.rejected:
            reasons = {e.line: e.reason for e in result.errors}
            skip = 2 if self.index_field else 1  # the line of source 0 in `text` (after its opening newline)
            for j, a in enumerate(addrs):
                if not a:
                    item = _Item(op, index, _id, first_line + 2 * j)
                    why = reasons.get(j + skip) or _why_not_json(sources[j])
                    answers[j] = _error(item, 400, "mapper_parsing_exception", f"failed to parse: {why}")
            self.errors = True
        self.items.extend(answers)

    def _items(self, lines: list[bytes]) -> None:
        """Item by item: any body."""
        n = len(lines)
        i = 0
        fast = self.keys is None
        while i < n:
            raw = lines[i]
            i += 1
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            if not raw.strip():
                continue
            op, index, _id, why = self._action(raw, i)
            item = _Item(op, index, _id, i)
            if op != "delete":
                if i >= n:
                    raise BulkError(400, "illegal_argument_exception",
                                    f"line {i}: the {op} action has no source line after it (the body must end "
                                    f"with a newline after the last source)")
                src = lines[i]
                i += 1
                item.source = src[:-1] if src[-1:] == b"\r" else src
            if why is not None:
                self._fail(item, 400, why[0], why[1])
            elif fast and op != "update" and op != "delete":
                self._write(item)
            else:
                self._one(item)

    def _action(self, raw: bytes, line: int) -> tuple[str, str, str | None, tuple | None]:
        """(op, index, _id, (error type, reason) or None) of an action line;
        the same line (most bodies repeat a few) is parsed once."""
        got = self._actions.get(raw)
        if got is not None:
            return got
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BulkError(400, "x_content_parse_exception",
                            f"line {line}: the action line is not JSON ({exc})") from None
        if not isinstance(obj, dict) or len(obj) != 1:
            raise BulkError(400, "illegal_argument_exception",
                            f"line {line}: an action line is an object with one of {', '.join(ACTIONS)}, "
                            f"got {raw[:100].decode(errors='replace')!r}")
        (op, meta), = obj.items()
        if op not in ACTIONS:
            raise BulkError(400, "illegal_argument_exception",
                            f"line {line}: Malformed action/metadata line, expected one of {', '.join(ACTIONS)} "
                            f"but found [{op}]")
        if not isinstance(meta, dict):
            raise BulkError(400, "illegal_argument_exception",
                            f"line {line}: the {op} action's metadata must be an object")
        index = meta.get("_index", self.default_index)
        if index is None:
            raise BulkError(400, "action_request_validation_exception",
                            f"Validation Failed: 1: index is missing (line {line}: name it in the action's "
                            f"_index or in the path, POST /<index>/_bulk);")
        if not isinstance(index, str):
            raise BulkError(400, "illegal_argument_exception", f"line {line}: _index must be a string")
        _id = meta.get("_id")
        if _id is not None and not isinstance(_id, str):
            _id = orjson.dumps(_id).decode() if isinstance(_id, (int, float)) and not isinstance(_id, bool) else None
        why = None
        bad = check_index(index)
        if bad:
            why = ("invalid_index_name_exception", f"Invalid index name [{index}], {bad}")
        elif _id is not None and len(_id.encode()) > MAX_ID_BYTES:
            why = ("illegal_argument_exception",
                   f"id [{_id[:64]}...] is too long, must be no longer than {MAX_ID_BYTES} bytes")
        elif _id == "":
            why = ("illegal_argument_exception", "if _id is specified it must not be empty")
        got = (op, index, _id, why)
        if len(self._actions) < 4096:
            self._actions[raw] = got
        return got

    # ---- one item ----
    def _one(self, item: _Item) -> None:
        if item.op in ("index", "create"):
            return self._write(item)
        if self.keys is None:
            return self._fail(item, 400, "illegal_argument_exception",
                              f"{item.op} needs a keyed store (its _id is the key): this store has no key; "
                              f"create it with key=<field> (shoal serve --key FIELD)")
        if item.id is None:
            return self._fail(item, 400, "action_request_validation_exception",
                              f"Validation Failed: 1: id is missing (an {item.op} names the key in _id);")
        self._flush()  # the items before it take effect first
        if item.op == "delete":
            return self._delete(item)
        return self._update(item)

    def _write(self, item: _Item) -> None:
        src = item.source
        if src[:1] == b"{" and src[1:2] not in _SPACE_OR_CLOSE:  # the common case: nothing to look at
            start = 0
        else:
            start = _object_start(src)
            if start is None:
                return self._fail(item, 400, "mapper_parsing_exception",
                                  "failed to parse: the source is not a JSON object" if src.strip() else
                                  "failed to parse: the source line is empty")
        doc = None
        if self.index_field and self.field_key in src:
            doc = _loads(src)
            if isinstance(doc, dict) and self.index_field in doc:
                return self._fail(item, 400, "mapper_parsing_exception",
                                  f"Field [{self.index_field}] is a metadata field and cannot be added inside a "
                                  f"document. Use the index API request parameters.")
        extra = []
        if self.index_field:
            extra.append(self._index_member(item.index))
        if self.keys is not None:
            doc = _loads(src) if doc is None else doc
            if not isinstance(doc, dict):
                return self._fail(item, 400, "mapper_parsing_exception", "failed to parse: the source is not JSON")
            key = self.keys.of(doc)
            if key is None:
                if item.id is None:
                    return self._fail(item, 400, "mapper_parsing_exception",
                                      f"the store is keyed by {self.keys.expr!r}: the source has no usable key "
                                      f"there and the action no _id")
                if self.keys.field is None:
                    return self._fail(item, 400, "mapper_parsing_exception",
                                      f"the source has no key at {self.keys.expr!r}, and _id can be placed only "
                                      f"in a key that is a plain field name")
                key = item.id
                extra.append(orjson.dumps(self.keys.field) + b":" + orjson.dumps(key))
            item.key = key
            if item.op == "create" and (key in self._pending_keys or self._lookup(key) is not None):
                return self._fail(item, 409, "version_conflict_engine_exception",
                                  f"[{key}]: version conflict, document already exists")
            self._pending_keys.add(key)
        self._run.append((len(self.items), item))
        self.items.append(None)  # filled when the run is stored
        parts = self._parts
        if not extra:
            parts.append(src)
        else:
            # The source's bytes after its brace are not copied here: the
            # run's one join copies them (a memoryview is a bytes-like part).
            body = memoryview(src)[start + 1:]
            parts.append(src[:start + 1] if start else b"{")
            parts.append(b",".join(extra))
            if src[start + 1:start + 2] == b'"' or not src[start + 1:].lstrip().startswith(b"}"):
                parts.append(b",")  # a member follows (an empty object takes none)
            parts.append(body)
        parts.append(b"\n")
        if len(self._run) >= RUN_RECORDS:
            self._flush()

    def _index_member(self, index: str) -> bytes:
        m = self._members.get(index)
        if m is None:
            m = self._members[index] = self.field_key + b":" + orjson.dumps(index)
        return m

    def _store(self, text: bytes, n: int):
        """Ingest a run's NDJSON text of n records: (the result, each record's address or 0)."""
        result = self.store.ingest(text, format="ndjson", addresses=True, durable=self.durable)
        self.ingested += result.ingested
        self.rejected += result.rejected
        self.input_bytes += result.input_bytes
        addrs = result.addresses
        if len(addrs) != n:  # every line is one record: a bug if not, never a silent mismatch
            raise RuntimeError(f"bulk: {n} sources framed as {len(addrs)} records")
        return result, addrs

    def _flush(self) -> None:
        run, parts = self._run, self._parts
        self._run, self._parts, self._pending_keys = [], [], set()
        if not run:
            return
        keyed = self.keys is not None
        existed = [self._lookup(item.key) is not None for _, item in run] if keyed else None
        result, addrs = self._store(b"".join(parts), len(run))
        reasons = {e.line: e.reason for e in result.errors} if result.rejected else {}
        items = self.items
        for j, ((pos, item), address) in enumerate(zip(run, addrs)):
            if address:
                if keyed:
                    updated = existed[j]
                    _id = str(item.key)
                else:
                    updated = False
                    _id = item.id if item.id is not None else str(address)
                items[pos] = {item.op: {
                    "_index": item.index, "_id": _id, "result": "updated" if updated else "created",
                    "_shards": _SHARDS, "_seq_no": address, "_primary_term": 1, "status": 200 if updated else 201}}
            else:
                why = reasons.get(j + 1, "the record was rejected")
                items[pos] = _error(item, 400, "mapper_parsing_exception", f"failed to parse: {why}")
                self.errors = True

    # ---- keyed stores ----
    def _lookup(self, key: Any):
        """The live record of `key` (an _id: a string, else the number it spells), or None."""
        rec = self.store.get_key(key)
        if rec is None and isinstance(key, str) and _INT.match(key):
            rec = self.store.get_key(int(key))
        return rec

    def _key_of(self, _id: str) -> Any:
        """The key _id names as the store holds it (the number for "7" when 7 is there)."""
        if self.store.get_key(_id) is None and _INT.match(_id) and self.store.get_key(int(_id)) is not None:
            return int(_id)
        return _id

    def _delete(self, item: _Item) -> None:
        key = self._key_of(item.id)
        found = self.store.delete_key(key, durable=self.durable)
        self.items.append({"delete": {
            "_index": item.index, "_id": item.id, "result": "deleted" if found else "not_found",
            "_shards": {"total": 1, "successful": 1, "failed": 0}, "status": 200 if found else 404}})

    def _update(self, item: _Item) -> None:
        body = _loads(item.source or b"")
        if not isinstance(body, dict):
            return self._fail(item, 400, "x_content_parse_exception", "the update's body is not a JSON object")
        if "script" in body:
            return self._fail(item, 400, "illegal_argument_exception",
                              "scripted updates are not supported: send a partial document in \"doc\"")
        doc = body.get("doc")
        if doc is not None and not isinstance(doc, dict):
            return self._fail(item, 400, "x_content_parse_exception", "\"doc\" must be an object")
        current = self._lookup(item.id)
        if current is None:
            fresh = body.get("upsert")
            if fresh is None and body.get("doc_as_upsert"):
                fresh = doc
            if not isinstance(fresh, dict):
                return self._fail(item, 404, "document_missing_exception", f"[{item.id}]: document missing")
            new = dict(fresh)
        else:
            if doc is None:
                return self._fail(item, 400, "action_request_validation_exception",
                                  "Validation Failed: 1: script or doc is missing;")
            old = orjson.loads(current.raw)
            if self.index_field:
                old.pop(self.index_field, None)
            new = _merged(old, doc)
            if new == old:
                self.items.append({"update": {"_index": item.index, "_id": item.id, "result": "noop",
                                              "_shards": {"total": 0, "successful": 0, "failed": 0},
                                              "_seq_no": current.address, "_primary_term": 1, "status": 200}})
                return None
            if self.keys.of(new) != self.keys.of(old):
                return self._fail(item, 400, "illegal_argument_exception",
                                  f"an update cannot change the key ({self.keys.expr}); index the document "
                                  f"under its new key instead")
        if self.index_field and self.index_field in new:
            return self._fail(item, 400, "mapper_parsing_exception",
                              f"Field [{self.index_field}] is a metadata field and cannot be added inside a document")
        item.source = orjson.dumps(new)
        item.op = "update"
        before = len(self.items)
        self._write(item)
        self._flush()
        got = self.items[before][item.op] if len(self.items) > before else None
        if got is not None and got.get("status") in (200, 201):
            got["result"] = "updated" if current is not None else "created"
            got["status"] = 200 if current is not None else 201

    def _fail(self, item: _Item, status: int, type_: str, reason: str) -> None:
        self.items.append(_error(item, status, type_, reason))
        self.errors = True


def _error(item: _Item, status: int, type_: str, reason: str) -> dict:
    return {item.op: {"_index": item.index, "_id": item.id, "status": status,
                      "error": {"type": type_, "reason": reason}}}


def _why_not_json(src: bytes) -> str:
    try:
        orjson.loads(src)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON ({exc})"
    return "the record was rejected"


def _object_start(src: bytes) -> int | None:
    """Where a source's opening brace is, or None when it does not start
    with one (after whitespace): Elasticsearch takes objects only."""
    stripped = src.lstrip(b" \t\r")
    if not stripped.startswith(b"{"):
        return None
    return len(src) - len(stripped)


def _loads(src: bytes) -> Any:
    try:
        return orjson.loads(src)
    except orjson.JSONDecodeError:
        return None


def _merged(old: dict, doc: dict) -> dict:
    """An update's partial document merged into the stored one as
    Elasticsearch merges: objects recursively, anything else replaced."""
    out = dict(old)
    for k, v in doc.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merged(out[k], v)
        else:
            out[k] = v
    return out


def parse_index_field(value: str | None) -> str | None:
    """--es-index-field as a setting: a field name, or '' / None for none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or '"' in value or "\\" in value:
        raise InvalidArgument(f"--es-index-field must be a plain field name, not {value!r}")
    return value
