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
"""
from __future__ import annotations

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
MAX_INDEX_BYTES = 255
# A run of index/create items goes to the store in calls of at most this
# many records, so every rejected one's reason is reported (the store lists
# max_reported_errors of them per call).
RUN_RECORDS = 1000
_PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})\Z")
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')


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
        self._run: list[tuple[int, _Item, bytes]] = []  # (position in items, item, record line)
        self._pending_keys: set = set()                 # keys created by the run not yet stored
        self._actions: dict[bytes, tuple] = {}          # action line -> parsed (most bodies repeat a few)

    # ---- the body ----
    def apply(self, body: bytes) -> dict:
        t0 = time.monotonic()
        lines = body.split(b"\n")
        if lines[-1].strip() == b"":  # what follows the last newline is no line
            lines.pop()
        n = len(lines)
        i = 0
        while i < n:
            raw = lines[i].rstrip(b"\r")
            i += 1
            if not raw.strip():
                continue
            op, meta = self._action(raw, i)
            index = meta.get("_index", self.default_index)
            if index is None:
                raise BulkError(400, "action_request_validation_exception",
                                f"Validation Failed: 1: index is missing (line {i}: name it in the action's "
                                f"_index or in the path, POST /<index>/_bulk);")
            if not isinstance(index, str):
                raise BulkError(400, "illegal_argument_exception", f"line {i}: _index must be a string")
            _id = meta.get("_id")
            if _id is not None and not isinstance(_id, str):
                _id = orjson.dumps(_id).decode() if isinstance(_id, (int, float)) else None
            item = _Item(op, index, _id, i)
            if op != "delete":
                if i >= n:
                    raise BulkError(400, "illegal_argument_exception",
                                    f"line {i}: the {op} action has no source line after it (the body must end "
                                    f"with a newline after the last source)")
                item.source = lines[i].rstrip(b"\r")
                i += 1
            self._one(item)
        self._flush()
        return {"took": int((time.monotonic() - t0) * 1000), "errors": self.errors, "items": self.items}

    def _action(self, raw: bytes, line: int) -> tuple[str, dict]:
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
        got = (op, meta)
        if len(self._actions) < 4096:
            self._actions[raw] = got
        return got

    # ---- one item ----
    def _one(self, item: _Item) -> None:
        why = check_index(item.index)
        if why:
            return self._fail(item, 400, "invalid_index_name_exception",
                              f"Invalid index name [{item.index}], {why}")
        if item.id is not None and len(item.id.encode()) > MAX_ID_BYTES:
            return self._fail(item, 400, "illegal_argument_exception",
                              f"id [{item.id[:64]}...] is too long, must be no longer than {MAX_ID_BYTES} bytes")
        if item.id == "":
            return self._fail(item, 400, "illegal_argument_exception", "if _id is specified it must not be empty")
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
            extra.append(self.field_key + b":" + orjson.dumps(item.index))
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
        if extra:
            rest = src[start + 1:]
            sep = b"" if rest.lstrip().startswith(b"}") else b","
            src = src[:start] + b"{" + b",".join(extra) + sep + rest
        pos = len(self.items)
        self.items.append({})  # filled when the run is stored
        self._run.append((pos, item, src))
        if item.key is not None:
            self._pending_keys.add(item.key)
        if len(self._run) >= RUN_RECORDS:
            self._flush()

    def _flush(self) -> None:
        run, self._run = self._run, []
        self._pending_keys = set()
        if not run:
            return
        existed = [self._lookup(item.key) is not None if item.key is not None else False for _, item, _ in run]
        result = self.store.ingest(b"\n".join(src for _, _, src in run), format="ndjson", addresses=True,
                                   durable=self.durable)
        self.ingested += result.ingested
        self.rejected += result.rejected
        self.input_bytes += result.input_bytes
        addrs = result.addresses
        if len(addrs) != len(run):  # every line is one record: a bug if not, never a silent mismatch
            raise RuntimeError(f"bulk: {len(run)} sources framed as {len(addrs)} records")
        reasons = {e.line: e.reason for e in result.errors}
        for j, ((pos, item, _), address) in enumerate(zip(run, addrs)):
            if address:
                updated = existed[j]
                _id = str(item.key) if item.key is not None else (item.id if item.id is not None else str(address))
                self.items[pos] = {item.op: {
                    "_index": item.index, "_id": _id, "result": "updated" if updated else "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": address,
                    "_primary_term": 1, "status": 200 if updated else 201}}
            else:
                why = reasons.get(j + 1, "the record was rejected")
                self.items[pos] = _error(item, 400, "mapper_parsing_exception", f"failed to parse: {why}")
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
