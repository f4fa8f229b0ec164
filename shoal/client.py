"""A Python client for a shoal server, shaped like the library's Store.

    with shoal.Client("http://127.0.0.1:8765") as c:
        c.register_psf("type", "type")
        res = c.ingest("events.ndjson.gz")          # streamed; gzip is sent compressed
        for rec in c.query("type", "PushEvent", limit=10):
            print(rec.address, rec.json())

What it sends and returns:
* `ingest` streams bytes, a path, a binary file or an iterable of byte
  chunks in ~1 MiB chunks, never reading the input whole. Input that starts
  with the gzip magic is sent as it is, with `Content-Encoding: gzip`; the
  server decompresses it. Returns an `IngestResult`.
* `query`, `query_all`, `query_any` and `scan` return a `RecordStream`: an
  iterator of `shoal.Record` (address and raw bytes) read as the server
  streams them. Errors in the request (unknown PSF, bad expression) raise at
  the call, as in the library; close the stream (or use it as a context
  manager) to stop early.
* Error answers raise the library's exceptions (PSFNotFound, PSFExists,
  PSFDefinitionError with .position, IngestRejected with .result, ...),
  the reverse of shoal/api/errors.py. Answers with no library counterpart
  (a body over the limit, not implemented, internal errors) raise
  `RemoteError`. Every raised error carries `.status` and `.code`.
  Connection failures are httpx's own exceptions.
* `get` returns None for an address holding no record, as the library does.

Why this file is long: Client is the Store's API over HTTP, one short method
per Store method (request, errors, answer), in one class as the Store is.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

try:
    import httpx
except ImportError as _exc:  # an optional dependency (shoal[client]): Client() says how to install it
    httpx = None  # type: ignore[assignment]
    _HTTPX_MISSING = str(_exc)

from . import errors as E
from .psf import PSF, PSFKind, parse_definition
from .results import CheckpointInfo, CompactionResult, IngestError, IngestResult, Record, make_records
from .wire import split_address_lines

__all__ = ["Client", "RecordStream"]

DEFAULT_URL = "http://127.0.0.1:8765"
INSTALL_HINT = "pip install 'shoal[client]'"
CHUNK_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def require_httpx() -> None:
    """Raise ModuleNotFoundError with the install hint when httpx, which the
    client needs and the library does not, could not be imported (shoal
    imports without it; only a Client cannot be made)."""
    if httpx is None:
        raise ModuleNotFoundError(f"shoal.Client needs httpx, which could not be imported ({_HTTPX_MISSING}); "
                                  f"install it with: {INSTALL_HINT}", name="httpx")


def _invalid(body: dict) -> Exception:
    return E.InvalidArgument(body.get("detail", ""))


# Error code -> exception: the reverse of shoal/api/errors.py's table.
_ERRORS: dict[str, Any] = {
    "psf_not_found": lambda b: E.PSFNotFound(b.get("detail", "")),
    "psf_exists": lambda b: E.PSFExists(b.get("detail", ""), b.get("name"), b.get("definition")),
    "psf_definition_error": lambda b: E.PSFDefinitionError(b.get("detail", ""), position=b.get("position"),
                                                           expression=b.get("expression")),
    "expression_too_long": lambda b: E.ExpressionTooLong(b.get("detail", ""), position=b.get("position"),
                                                         expression=b.get("expression"), length=b.get("length"),
                                                         limit=b.get("limit")),
    "expression_too_deep": lambda b: E.ExpressionTooDeep(b.get("detail", ""), position=b.get("position"),
                                                         expression=b.get("expression"), depth=b.get("depth"),
                                                         limit=b.get("limit")),
    "evaluation_budget_exceeded": lambda b: E.EvaluationBudgetExceeded(b.get("detail", ""), limit=b.get("limit"),
                                                                       address=b.get("address")),
    "too_many_psfs": lambda b: E.TooManyPSFs(b.get("detail", ""), b.get("limit")),
    "psf_error": lambda b: E.PSFError(b.get("detail", "")),
    "ingest_rejected": lambda b: E.IngestRejected(_ingest_result(b)),
    "no_valid_records": lambda b: E.IngestRejected(_ingest_result(b)),
    "input_too_large": lambda b: E.InputTooLarge(b.get("detail", ""), b.get("limit_bytes")),
    "empty_body": _invalid,
    "parse_error": lambda b: E.ParseError(b.get("reason") or b.get("detail", ""), b.get("line"), b.get("offset")),
    "invalid_argument": _invalid,
    "validation_error": _invalid,
    "bad_request": _invalid,
    "record_too_large": lambda b: E.RecordTooLarge(b.get("detail", ""), max_record_bytes=b.get("max_record_bytes"),
                                                   page_size_bytes=b.get("page_size_bytes")),
    "store_closed": lambda b: E.StoreClosed(b.get("detail", "")),
    "store_locked": lambda b: E.StoreLocked(b.get("detail", "")),
    "shard_unavailable": lambda b: E.ShardUnavailable(b.get("detail", ""), b.get("shards", [])),
    "tail_gap": lambda b: E.TailGap(b.get("detail", ""), tuple(b.get("missed", (0, 0)))),
    "corruption": lambda b: E.CorruptionError(b.get("detail", "")),
    "disk_full": lambda b: E.DiskFull(b.get("detail", "")),
    "io_error": lambda b: E.NativeIOError(b.get("detail", "")),
    "storage_error": lambda b: E.StorageError(b.get("detail", "")),
    "shoal_error": lambda b: E.ShoalError(b.get("detail", "")),
    "unauthorized": lambda b: E.AccessDenied(401, "unauthorized", b.get("detail", ""), b),
    "forbidden": lambda b: E.AccessDenied(403, "forbidden", b.get("detail", ""), b),
}


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        body = {"error": "http_error", "detail": response.text[:1000]}
    code = str(body.get("error", "http_error"))
    make = _ERRORS.get(code)
    exc = make(body) if make else E.RemoteError(response.status_code, code, body.get("detail", ""), body)
    exc.status = response.status_code
    exc.code = code
    if "ingested" in body and not isinstance(exc, E.IngestRejected):
        # an ingest that failed partway: what the server stored before it
        exc.ingest_result = _ingest_result(body)
    raise exc


# Ingest answers that are errors over HTTP but results in the library.
_STORED_NOTHING = ("empty_body", "no_valid_records", "record_too_large")


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _ingest_result(b: dict) -> IngestResult:
    return IngestResult(
        ingested=b.get("ingested", 0), rejected=b.get("rejected", 0),
        errors=[IngestError(e["line"], e["error"], e.get("offset")) for e in b.get("errors", [])],
        first_address=b.get("first_address"), last_address=b.get("last_address"),
        input_bytes=b.get("input_bytes", 0), stored_bytes=b.get("stored_bytes", 0),
        durable=b.get("durable", False))


def _psf(b: dict) -> PSF:
    expr = b.get("expr")
    try:
        expression = parse_definition(expr) if expr is not None else None
    except E.ShoalError:  # a server with a newer dialect: keep the text only
        expression = None
    return PSF(id=b["id"], name=b["name"], definition=expr, kind=PSFKind(b["kind"]), fields=None,
               ranges=[(r[0], r[1]) for r in b.get("ranges", [])], expression=expression,
               bucket=b.get("bucket"), time=bool(b.get("time", False)))


class RecordStream:
    """Records as the server streams them (iterator; closes the response at
    its end, on close() and when used as a context manager)."""

    def __init__(self, response: httpx.Response):
        self._response = response
        self._it = self._records()

    def __iter__(self) -> RecordStream:
        return self

    def __next__(self) -> Record:
        return next(self._it)

    def __enter__(self) -> RecordStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._it.close()
        self._response.close()

    def _records(self) -> Iterator[Record]:
        try:
            yield from _stream_records(self._response.iter_bytes())
        finally:
            self._response.close()


def _stream_records(chunks: Iterable[bytes]) -> Iterator[Record]:
    """Records from the lines {"address":<int>,"record":<raw>} the server
    writes, split in C a chunk at a time: the Records share their chunk's
    bytes (the raw text is sliced out, never re-encoded)."""
    pending: list[bytes] = []  # the pieces of a line not yet complete
    for chunk in chunks:
        if b"\n" not in chunk:  # a long record arriving in pieces: joined once, when its line ends
            if chunk:
                pending.append(bytes(chunk))
            continue
        data = b"".join((*pending, chunk)) if pending else bytes(chunk)
        used = yield from _split(data)
        pending = [data[used:]] if used < len(data) else []
    rest = b"".join(pending)
    if rest.strip():
        yield from _split(rest + b"\n")


def _split(data: bytes):
    """Records of data's complete lines (a generator); returns where the
    first line not taken starts. A line not of the form raises."""
    addrs, offs, lens, used, bad = split_address_lines(data)
    if addrs:
        yield from make_records(data, addrs, lens, offs, share=True)
    if bad >= 0:
        line = data[bad:data.find(b"\n", bad)]
        raise E.RemoteError(200, "bad_stream", f"unexpected line in a record stream: {line[:80]!r}", {})
    return used


def _chunks(data: Any, size: int) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        mv = memoryview(data).cast("B")
        for i in range(0, len(mv), size):
            yield bytes(mv[i:i + size])
    elif isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            yield from _read(f, size)
    elif hasattr(data, "read"):
        yield from _read(data, size)
    elif isinstance(data, Iterable):
        for c in data:
            if isinstance(c, str):
                c = c.encode("utf-8")
            if not isinstance(c, (bytes, bytearray, memoryview)):
                raise E.InvalidArgument(f"iterable yielded {type(c).__name__}, expected bytes")
            if len(c):
                yield bytes(c)
    else:
        raise E.InvalidArgument(f"cannot ingest {type(data).__name__}: pass bytes, a path, a binary file "
                                f"or an iterable of bytes")


def _read(f: Any, size: int) -> Iterator[bytes]:
    read = f.read1 if isinstance(f, io.BufferedIOBase) else f.read
    while True:
        c = read(size)
        if not c:
            return
        if isinstance(c, str):
            raise E.InvalidArgument("file object is in text mode; open it in binary mode ('rb')")
        yield c


def _peek(chunks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    first = next(chunks, b"")

    def rest() -> Iterator[bytes]:
        if first:
            yield first
        yield from chunks

    return first, rest()


class Client:
    """A shoal server's API as methods (see the module docstring)."""

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float | None = 300.0,
                 verify: Any = True, http: httpx.Client | None = None, chunk_bytes: int = CHUNK_BYTES):
        """`token`: sent as `Authorization: Bearer <token>` (default
        $SHOAL_TOKEN; a server without tokens ignores it). `verify`: for
        https URLs, True (the system's CAs, or $SSL_CERT_FILE), a CA bundle
        path or an ssl.SSLContext, as httpx takes it."""
        require_httpx()
        self.url = url
        self.chunk_bytes = chunk_bytes
        token = token if token is not None else os.environ.get("SHOAL_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if http is not None:
            http.headers.update(headers)
        self._http = http or httpx.Client(base_url=url, timeout=httpx.Timeout(timeout, connect=10.0),
                                          headers=headers, verify=verify)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        if "json" in kw:
            kw.update(_json_content(kw.pop("json")))
        r = self._http.request(method, path, **kw)
        _raise_for(r)
        return r.json()

    def _stream(self, path: str, body: dict | None = None, params: dict | None = None,
                method: str = "POST") -> RecordStream:
        # Records come back with their addresses: a body field of POST
        # /query and /scan (like limit and order), a query parameter of GET.
        if body is not None:
            body = dict(body, with_address=True)
        else:
            params = dict(params or {}, with_address="true")
        req = self._http.build_request(method, path, params=params,
                                       **(_json_content(body) if body is not None else {}))
        return RecordStream(self._send_stream(req))

    def _send_stream(self, req) -> httpx.Response:
        """The response to req, its body not read yet; an error answer raised."""
        r = self._http.send(req, stream=True)
        if not r.is_success:
            try:
                r.read()
            finally:
                r.close()
            _raise_for(r)
        return r

    # ---- ingest ----
    def ingest(self, data: Any, *, on_error: str = "skip", durable: bool = False,
               format: str = "auto") -> IngestResult:
        """Store records from bytes, a path, a binary file or an iterable of
        byte chunks, streamed to the server (gzip input is sent compressed)."""
        first, chunks = _peek(_chunks(data, self.chunk_bytes))
        headers = {"Content-Type": "application/json" if format == "array" else "application/x-ndjson"}
        if first[:2] == _GZIP_MAGIC:
            headers["Content-Encoding"] = "gzip"
        params = {"on_error": on_error, "durable": "true" if durable else "false", "format": str(format)}
        r = self._http.request("POST", "/records", content=chunks, headers=headers, params=params)
        if r.status_code in (400, 413, 422) and _error_code(r) in _STORED_NOTHING and "ingested" in r.json():
            # The server's loud answer for a body that stored nothing; the
            # library returns that as a value, and so does this client.
            return _ingest_result(r.json())
        _raise_for(r)
        return _ingest_result(r.json())

    # ---- PSFs ----
    def register_psf(self, name: str, definition: str, *, exist_ok: bool = False, replace: bool = False,
                     bucket: float | None = None, time: bool = False) -> PSF:
        """Register a JMESPath PSF (callables cannot travel over HTTP);
        exist_ok, replace, bucket and time as in Store.register_psf."""
        if not isinstance(definition, str):
            raise E.InvalidArgument("over HTTP a PSF definition must be a JMESPath str")
        body: dict[str, Any] = {"name": name, "expr": definition}
        if bucket is not None:
            body["bucket"] = bucket
            body["time"] = time
        if exist_ok:  # sent only when asked, so servers without the field still answer
            body["exist_ok"] = True
        if replace:
            body["replace"] = True
        return _psf(self._call("POST", "/psfs", json=body))

    def deregister_psf(self, name: str) -> PSF:
        return _psf(self._call("DELETE", _psf_path(name)))

    def psf(self, name: str) -> PSF:
        return _psf(self._call("GET", _psf_path(name)))

    def psfs(self) -> list[PSF]:
        return [_psf(p) for p in self._call("GET", "/psfs")["psfs"]]

    # ---- reads ----
    # Every read takes fields= (each record as an object of just those fields;
    # Store.query says how) and page_size=N: the answer is then asked for N
    # records at a time, each page resuming after the last (the server's
    # X-Shoal-Next-Cursor), iterated as one; limit then counts here.
    def query(self, psf: str, value: Any = True, *, limit: int | None = None, order: str = "newest",
              from_address: int | None = None, to_address: int | None = None,
              include_superseded: bool = False, fields: Sequence[str] | None = None,
              page_size: int | None = None, since: Any = None, until: Any = None) -> Iterator[Record]:
        return self._read("/query", _window({"psf": psf, "value": value}, since, until), limit, order,
                          from_address, to_address, include_superseded, fields, page_size)

    def query_all(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  fields: Sequence[str] | None = None, page_size: int | None = None, since: Any = None,
                  until: Any = None) -> Iterator[Record]:
        return self._read("/query", _window({"all": _conditions(conditions)}, since, until), limit, order,
                          from_address, to_address, include_superseded, fields, page_size)

    def query_any(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  fields: Sequence[str] | None = None, page_size: int | None = None, since: Any = None,
                  until: Any = None) -> Iterator[Record]:
        return self._read("/query", _window({"any": _conditions(conditions)}, since, until), limit, order,
                          from_address, to_address, include_superseded, fields, page_size)

    def scan(self, expression: str, *, limit: int | None = None, order: str = "newest",
             from_address: int | None = None, to_address: int | None = None,
             include_superseded: bool = False, fields: Sequence[str] | None = None,
             page_size: int | None = None, since: Any = None, until: Any = None) -> Iterator[Record]:
        return self._read("/scan", _window({"expr": expression}, since, until), limit, order, from_address,
                          to_address, include_superseded, fields, page_size)

    def query_range(self, psf: str, lo: Any, hi: Any, *, limit: int | None = None, order: str = "newest",
                    from_address: int | None = None, to_address: int | None = None,
                    include_superseded: bool = False, fields: Sequence[str] | None = None,
                    page_size: int | None = None) -> Iterator[Record]:
        """Records whose bucketed PSF has a value in [lo, hi) (Store.query_range)."""
        return self._read("/query", {"psf": psf, "range": [lo, hi]}, limit, order, from_address, to_address,
                          include_superseded, fields, page_size)

    def count_range(self, psf: str, lo: Any, hi: Any, *, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False) -> int:
        return self._count({"psf": psf, "range": [lo, hi]}, from_address, to_address, include_superseded)

    def _read(self, path: str, body: dict, limit, order, from_address, to_address, include_superseded,
              fields, page_size) -> Iterator[Record]:
        if fields is not None:
            body = dict(body, fields=list(fields))
        if page_size is None:
            return self._stream(path, _query_body(body, limit, order, from_address, to_address, include_superseded))
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise E.InvalidArgument("page_size must be a positive int")
        return self._pages(path, _query_body(body, None, order, from_address, to_address, include_superseded),
                           page_size, limit)

    def _pages(self, path: str, body: dict, page_size: int, limit: int | None) -> Iterator[Record]:
        left = limit
        body = dict(body, with_address=True)
        while left is None or left > 0:
            body["page_size"] = page_size if left is None else min(page_size, left)
            r = self._http.post(path, **_json_content(body))
            _raise_for(r)
            for rec in _stream_records([r.content]):
                yield rec
                if left is not None:
                    left -= 1
            cursor = r.headers.get("X-Shoal-Next-Cursor")
            if cursor is None:
                return
            body["cursor"] = cursor

    # ---- the live tail ----
    def tail(self, psf: str | None = None, value: Any = True, *, since_address: int | None = None,
             timeout: float | None = None, fields: Sequence[str] | None = None,
             on_gap: str = "error") -> Iterator[Record]:
        """GET /tail: records matching (psf, value), or every record, as they
        are ingested (Store.follow), until `timeout` seconds pass without
        one or the iterator is closed. A gap (the log the server dropped
        below a slow follower) raises TailGap, or with on_gap="skip" is
        passed over."""
        if on_gap not in ("error", "skip"):
            raise E.InvalidArgument(f"on_gap must be 'error' or 'skip', not {on_gap!r}")
        params: list[tuple[str, Any]] = [("with_address", "true")]
        if psf is not None:
            params += [("psf", psf), ("value", json.dumps(value))]
        if since_address is not None:
            params.append(("since_address", since_address))
        if timeout is not None:
            params.append(("timeout", timeout))
        params += [("fields", f) for f in fields or []]
        req = self._http.build_request("GET", "/tail", params=params)
        return self._tail_records(self._send_stream(req), on_gap)

    @staticmethod
    def _tail_records(r, on_gap: str) -> Iterator[Record]:
        try:
            for text in r.iter_lines():
                line = text.encode()
                if not line:
                    continue
                if line.startswith(b'{"gap":'):
                    gap = json.loads(line)["gap"]
                    if on_gap == "error":
                        raise E.TailGap(f"the server dropped the log from {gap['from']} to {gap['to']} before "
                                        f"this tail read it", (gap["from"], gap["to"]))
                    continue
                # {"address":N,"record":<the record's bytes>}: sliced, never re-encoded
                head, sep, rest = line.partition(b',"record":')
                yield Record(int(head[len(b'{"address":'):]), rest[:-1])
        finally:
            r.close()

    # ---- counts and top values ----
    def count(self, psf: str, value: Any = True, *, from_address: int | None = None,
              to_address: int | None = None, include_superseded: bool = False, since: Any = None,
              until: Any = None) -> int:
        """POST /count: how many records query(psf, value) would return (Store.count)."""
        return self._count(_window({"psf": psf, "value": value}, since, until), from_address, to_address,
                           include_superseded)

    def count_all(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False, since: Any = None,
                  until: Any = None) -> int:
        return self._count(_window({"all": _conditions(conditions)}, since, until), from_address, to_address,
                           include_superseded)

    def count_any(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False, since: Any = None,
                  until: Any = None) -> int:
        return self._count(_window({"any": _conditions(conditions)}, since, until), from_address, to_address,
                           include_superseded)

    def _count(self, body: dict, from_address, to_address, include_superseded) -> int:
        body = _query_body(body, None, "newest", from_address, to_address, include_superseded)
        return int(self._call("POST", "/count", json=body)["count"])

    def group_count(self, psf: str, *, limit: int | None = None, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False, since: Any = None,
                    until: Any = None) -> list[tuple[Any, int]]:
        """POST /group_count: (value, count) pairs, largest first (Store.group_count)."""
        body: dict[str, Any] = _window({"psf": psf}, since, until)
        for k, v in (("limit", limit), ("from_address", from_address), ("to_address", to_address)):
            if v is not None:
                body[k] = v
        if include_superseded:
            body["include_superseded"] = True
        return [(g["value"], g["count"]) for g in self._call("POST", "/group_count", json=body)["groups"]]

    # ---- keyed stores ----
    def get_key(self, key: Any) -> Record | None:
        """The live version of `key` (a string or a number), or None."""
        r = self._http.get(f"/keys/{_key_path(key)}")
        if r.status_code == 404 and r.json().get("error") == "key_not_found":
            return None
        _raise_for(r)
        return Record(int(r.headers["X-Shoal-Address"]), r.content)

    def delete_key(self, key: Any, *, durable: bool = False) -> bool:
        """Delete `key`; False when it had no live version."""
        r = self._http.delete(f"/keys/{_key_path(key)}", params={"durable": "true" if durable else "false"})
        if r.status_code == 404 and r.json().get("error") == "key_not_found":
            return False
        _raise_for(r)
        return bool(r.json()["deleted"])

    def get(self, address: int) -> Record | None:
        if not isinstance(address, int) or isinstance(address, bool):  # as Store.get
            raise E.InvalidArgument("address must be an int")
        if address < 0:
            raise E.InvalidArgument("address must be a non-negative int")
        r = self._http.get(f"/records/{address}")
        if r.status_code == 404 and r.json().get("error") == "record_not_found":
            return None
        _raise_for(r)
        return Record(int(address), r.content)

    # ---- durability and state ----
    def checkpoint(self) -> CheckpointInfo:
        b = self._call("POST", "/checkpoints")
        return CheckpointInfo(b["checkpoint_id"], b["tail_address"], b["begin_address"], b["records"],
                              b["created_at"], b["duration_ms"])

    def checkpoints(self) -> list[int]:
        return self._call("GET", "/checkpoints")["checkpoints"]

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def compact(self, until_address: int | None = None, *,
                retain_bytes: int | None = None) -> CompactionResult:
        """POST /compact: reclaim the log below `until_address`, or keep the
        newest `retain_bytes` of it (exactly one), as Store.compact."""
        if (until_address is None) == (retain_bytes is None):
            raise E.InvalidArgument("give exactly one of until_address or retain_bytes")
        body = {"until_address": until_address} if until_address is not None else {"retain_bytes": retain_bytes}
        b = self._call("POST", "/compact", json=body)
        return CompactionResult(**{f.name: b[f.name] for f in dataclasses.fields(CompactionResult)})

    def health(self) -> dict:
        return self._call("GET", "/healthz")


def _conditions(conditions: Iterable[tuple[str, Any]]) -> list[dict]:
    out = []
    for c in conditions:
        if not (isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str)):
            raise E.InvalidArgument("each condition is a (psf_name, value) pair")
        out.append({"psf": c[0], "value": c[1]})
    return out


def _json_content(body: Any) -> dict[str, Any]:
    """A JSON request body, encoded as httpx would, except that a string
    holding a lone surrogate (no UTF-8 for it: httpx raises
    UnicodeEncodeError; a command line turns undecodable bytes into them)
    goes as its \\uXXXX escape, for the server to answer (a PSF name with
    one is a 422 stating the rule)."""
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except UnicodeEncodeError:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return {"content": text, "headers": {"Content-Type": "application/json"}}


def _key_path(key: Any) -> str:
    """A key as its JSON text, URL-quoted: the server reads it back exactly."""
    if isinstance(key, bool) or not isinstance(key, (str, int, float)):
        raise E.InvalidArgument(f"a key is a string or a number, not {type(key).__name__}")
    return urllib.parse.quote(json.dumps(key), safe="")


def _psf_path(name: str) -> str:
    """/psfs/<name>, percent-encoded: a name may hold "/", "?", "#" or "%".
    A name that is "." or ".." has its dots encoded too: as a path segment
    of their own, httpx would resolve them away (/psfs/.. is /)."""
    try:
        quoted = urllib.parse.quote(name, safe="")
    except UnicodeEncodeError:  # a lone surrogate: no URL holds one, and no PSF name (the name rule)
        raise E.PSFNotFound(f"no PSF named {name!r}") from None
    return "/psfs/" + (quoted.replace(".", "%2E") if quoted in (".", "..") else quoted)


def _window(body: dict, since: Any, until: Any) -> dict:
    """since/until in a body, when given (datetimes as ISO-8601 text)."""
    for k, v in (("since", since), ("until", until)):
        if v is not None:
            body[k] = v.isoformat() if hasattr(v, "isoformat") else v
    return body


def _query_body(body: dict, limit: int | None, order: str, from_address: int | None,
                to_address: int | None, include_superseded: bool = False) -> dict:
    body = dict(body, order=order)
    if include_superseded:
        body["include_superseded"] = True
    for k, v in (("limit", limit), ("from_address", from_address), ("to_address", to_address)):
        if v is not None:
            body[k] = v
    return body
