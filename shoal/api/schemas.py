"""Request and response bodies of the HTTP API (v1), as pydantic models.

They describe the wire format and drive /docs; they hold no logic beyond
checking shapes. Streams of records (NDJSON) are described by
`ndjson_response` since pydantic cannot model a stream.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import InvalidArgument
from ..psf import MAX_NAME_CHARS, PSF, check_name
from ..psf.entry import NAME_RULE

Order = Literal["newest", "oldest"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error answer. More fields may follow, e.g. `position` for a bad
    expression, `line`/`offset` for bad input, `errors` for rejected records."""
    model_config = ConfigDict(extra="allow")
    error: str = Field(description="a stable machine-readable code, e.g. psf_not_found")
    detail: str = Field(description="a human-readable message")


# ---- ingest ----

class IngestErrorOut(BaseModel):
    line: int = Field(description="1-based line (NDJSON) or element number (array)")
    error: str = Field(description="why the record was rejected")
    offset: int | None = Field(None, description="byte offset of the problem within the record")


class IngestOut(BaseModel):
    ingested: int = Field(description="records stored")
    rejected: int = Field(description="records rejected (all counted)")
    first_address: int | None = Field(description="address of the first stored record")
    last_address: int | None = Field(description="address of the last stored record")
    errors: list[IngestErrorOut] = Field(description="the first rejected records (at most 100)")
    errors_total: int = Field(description="all rejected records")
    input_bytes: int = Field(description="bytes of record text read (after gunzip)")
    stored_bytes: int = Field(description="bytes appended to the log")
    durable: bool = Field(description="true when the records were on disk before the answer")
    max_record_bytes: int | None = Field(None, description="the record size limit, when a record of the body "
                                                           "was over it (error 'record too large: ...')")
    page_size_bytes: int | None = Field(None, description="the store's log page size, which sets that limit (a "
                                                          "record must fit in one page; fixed when the store "
                                                          "was created), when a record was over it")


# ---- PSFs ----

class PSFIn(_Body):
    # The rule is the registry's (check_name), so that every name it refuses
    # is a 422 stating the rule; the schema states it for /docs.
    name: str = Field(examples=["repo"], description=NAME_RULE + "; `/` allowed (percent-encoded in paths)",
                      json_schema_extra={"minLength": 1, "maxLength": MAX_NAME_CHARS})
    expr: str = Field(description="a JMESPath expression", examples=["repo.name"])
    exist_ok: bool = Field(False, description="a PSF of this name already active with the same `expr` is "
                                              "not an error: it is answered as it is (200, no new range)")
    replace: bool = Field(False, description="a PSF of this name active with another `expr` is deregistered "
                                             "and this one registered from the same address on, in one step "
                                             "(201); with the same `expr`, as exist_ok")
    bucket: float | None = Field(None, gt=0, description="a bucketed PSF: a number x is indexed as the bucket "
                                                       "floor(x / bucket), so `range` queries and counts walk "
                                                       "buckets (the expression must be a path the C core "
                                                       "evaluates)")
    time: bool = Field(False, description="with bucket (seconds): the value is a time, epoch seconds or "
                                          "milliseconds or an ISO-8601 string")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        try:
            check_name(name)
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None
        return name


class PSFOut(BaseModel):
    name: str
    id: int = Field(description="psf_id; reused only after every id was used and the store forgot the PSF "
                                "that had it (see max_inactive_psfs)")
    expr: str | None = Field(description="the JMESPath expression (null for a Python callable)")
    kind: Literal["predicate", "projection", "callable"]
    native: bool = Field(description="evaluated by the C core during ingest")
    active: bool
    active_from: int | None = Field(description="start of the current active range (null when inactive)")
    ranges: list[tuple[int, int | None]] = Field(
        description="log ranges [from, to) in which the PSF was active (indexed); to is null while active")
    bucket: float | None = Field(None, description="the bucket width of a bucketed PSF (null: none)")
    time: bool = Field(False, description="a bucketed PSF of times")


class PSFDeregisteredOut(PSFOut):
    range: tuple[int, int] = Field(description="the active range the deregistration closed")


class PSFList(BaseModel):
    psfs: list[PSFOut]


def psf_out(p: PSF) -> dict[str, Any]:
    return {"name": p.name, "id": p.id, "expr": p.definition, "kind": p.kind.value, "native": p.native,
            "active": p.active, "active_from": p.ranges[-1][0] if p.active else None,
            "ranges": [list(r) for r in p.ranges], "bucket": p.bucket, "time": p.time}


# ---- queries ----

class Condition(_Body):
    psf: str = Field(description="a PSF name", examples=["type"])
    value: Any = Field(True, description="a JSON value: string, number or true (default)",
                       examples=["PushEvent"])


# A page is read whole before it is answered (its cursor is a header): bounded.
MAX_PAGE_SIZE = 10_000


class _Range(_Body):
    limit: int | None = Field(None, ge=0, strict=True, description="at most this many records")
    order: Order = Field("newest", description="newest (default) or oldest first")
    from_address: int | None = Field(None, ge=0, strict=True, description="only records at or after this address")
    to_address: int | None = Field(None, ge=0, strict=True, description="only records before this address")
    include_superseded: bool = Field(False, description="keyed stores: also older versions of keys and "
                                                        "deleted ones (default: live versions only)")
    with_address: bool = Field(False, description='wrap each record as {"address": a, "record": <record>} '
                                                  '(the query parameter of the same name works too; given '
                                                  'both ways, they must agree)')
    fields: list[str] | None = Field(None, min_length=1, max_length=256, examples=[["type", "repo.name"]],
                                     description="answer each record as an object of just these fields: plain "
                                                 "paths keep their nesting ({\"repo\": {\"name\": ..}}), other "
                                                 "JMESPath expressions go under their own text")
    since: int | float | str | None = Field(None, description="stores with a time field: only records at or "
                                                              "after this time (epoch seconds or milliseconds, "
                                                              "or ISO-8601)", examples=["2015-01-01T15:00:00Z"])
    until: int | float | str | None = Field(None, description="stores with a time field: only records before "
                                                              "this time")
    page_size: int | None = Field(None, ge=1, le=MAX_PAGE_SIZE, strict=True,
                                  description="answer one page of at most this many records; when more follow, "
                                              "the `X-Shoal-Next-Cursor` response header holds the `cursor` that "
                                              "asks for the next page (the body otherwise the same)")
    cursor: str | None = Field(None, max_length=64, description="the `X-Shoal-Next-Cursor` of the previous page")

    @model_validator(mode="after")
    def _pages(self) -> "_Range":
        if self.cursor is not None and self.page_size is None:
            raise ValueError("'cursor' goes with 'page_size'")
        if self.page_size is not None and self.limit is not None:
            raise ValueError("give 'page_size' (one page at a time) or 'limit' (one answer), not both")
        return self


class QueryIn(_Range):
    """One condition (`psf` + `value`, or `psf` + `range` on a bucketed
    PSF), or `all` (every one holds) or `any` (at least one holds) of a list
    of conditions."""
    psf: str | None = Field(None, examples=["type"])
    value: Any = Field(True, examples=["PushEvent"])
    range: tuple[Any, Any] | None = Field(None, examples=[[100, 500]],
                                          description="[lo, hi): records whose bucketed PSF `psf` has a value "
                                                      "from lo (inclusive) to hi (exclusive); numbers, or times "
                                                      "for a time PSF")
    all: list[Condition] | None = Field(None, min_length=1)
    any: list[Condition] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> QueryIn:
        given = [k for k in ("psf", "all", "any") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'psf', 'all' or 'any'")
        if self.psf is None and "value" in self.model_fields_set:
            raise ValueError("'value' goes with 'psf'; inside 'all'/'any' each condition has its own")
        if self.range is not None and (self.psf is None or "value" in self.model_fields_set):
            raise ValueError("'range' goes with 'psf', instead of 'value'")
        return self

    def conditions(self) -> tuple[str, list[tuple[str, Any]]]:
        if self.psf is not None:
            return "one", [(self.psf, self.value)]
        mode = "all" if self.all is not None else "any"
        return mode, [(c.psf, c.value) for c in (self.all or self.any or [])]


class CountOut(BaseModel):
    count: int = Field(description="how many records match, exactly")


class GroupCountIn(_Body):
    psf: str = Field(description="a PSF name", examples=["type"])
    since: int | float | str | None = Field(None, description="as in POST /query")
    until: int | float | str | None = Field(None, description="as in POST /query")
    limit: int | None = Field(None, ge=0, strict=True, description="at most this many values (the largest counts)")
    from_address: int | None = Field(None, ge=0, strict=True, description="only records at or after this address")
    to_address: int | None = Field(None, ge=0, strict=True, description="only records before this address")
    include_superseded: bool = Field(False, description="keyed stores: also older versions of keys and "
                                                        "deleted ones (default: live versions only)")


class Group(BaseModel):
    value: Any = Field(description="a JSON value: string, number or true")
    count: int


class GroupCountOut(BaseModel):
    groups: list[Group] = Field(description="largest count first")


class ScanIn(_Range):
    expr: str = Field(description="a JMESPath expression; records where it is truthy match",
                      examples=["payload.size > `3`"])


# ---- checkpoints, stats, health ----

class CheckpointOut(BaseModel):
    checkpoint_id: int
    tail_address: int
    begin_address: int
    records: int
    created_at: float = Field(description="Unix time")
    duration_ms: float


class CheckpointList(BaseModel):
    checkpoints: list[int] = Field(description="ids of the checkpoints on disk, oldest first")
    latest: int | None


class CompactIn(_Body):
    """Where to cut the log: exactly one of the two."""
    until_address: int | None = Field(None, ge=0, strict=True,
                                      description="reclaim the log below this address (rounded down to a page start)")
    retain_bytes: int | None = Field(None, ge=0, strict=True,
                                     description="keep the newest this many bytes of log, reclaim the rest")

    @model_validator(mode="after")
    def _one_cut(self) -> CompactIn:
        if (self.until_address is None) == (self.retain_bytes is None):
            raise ValueError("give exactly one of 'until_address' or 'retain_bytes'")
        return self


class CompactionOut(BaseModel):
    begin_before: int = Field(description="the log's begin address before")
    begin_after: int = Field(description="the begin address now (equal to begin_before: nothing to do)")
    bytes_reclaimed: int = Field(description="disk freed: segment files deleted whole, and the hole punched "
                                             "below the cut in the file holding it")
    records_dropped: int = Field(description="records below the cut that were not live")
    records_copied: int = Field(description="live records copied to the tail (keyed stores)")
    segments_deleted: int
    duration_ms: float
    disk_bytes_before: int = Field(0, description="what the segment files took on disk (allocated blocks) before")
    disk_bytes_after: int = Field(0, description="what they take on disk after (copies included)")


class Health(BaseModel):
    status: Literal["ok"]
    tail_address: int


class ClusterMap(BaseModel):
    """Cluster.shard_map(): how a cluster routes records to its shards."""
    directory: str
    ray: dict[str, str]
    virtual_shards: int
    owners: list[int] = Field(description="virtual shard -> shard")
    key: str | None
    route_by: str | None
    moving: bool = Field(description="a move of keys between shards, or a removal of shards, is under way")
    shards: list[dict[str, Any]]


class Stats(BaseModel):
    """Store.stats(), plus the server's own counters."""
    model_config = ConfigDict(extra="allow")
    records: int
    addresses: dict[str, int]
    log_bytes: int
    memory_bytes: int
    memory_budget_bytes: int
    disk_bytes: int
    index: dict[str, int]
    psfs: list[dict[str, Any]]
    ingest: dict[str, float] = Field(description="ingest calls since open: calls, records, rejected, bytes, and commit_seconds (wall seconds appending under the writer lock)")
    recovery: dict[str, Any]
    compaction: dict[str, Any] = Field(description="compaction runs, the last result, bytes reclaimed, errors, "
                                                   "the retention policy")


# ---- OpenAPI helpers for what pydantic cannot model ----

# Any JSON value: a record is whatever JSON text was ingested, an object most
# often but also a number, a string, an array, true, false or null.
RECORD_SCHEMA = {"description": "a stored record, byte for byte as ingested: any JSON value (an object most often)"}
WITH_ADDRESS_SCHEMA = {"type": "object", "properties": {"address": {"type": "integer"}, "record": RECORD_SCHEMA},
                       "required": ["address", "record"]}


def ndjson_response(what: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route answering with a stream of records."""
    return {200: {
        "description": f"{what}: an NDJSON stream (one record per line, as ingested). With "
                       "`with_address=true` each line is `{\"address\": a, \"record\": <record>}`.",
        # anyOf: a record may itself look like an address-wrapped line.
        "content": {"application/x-ndjson": {"schema": {"anyOf": [RECORD_SCHEMA, WITH_ADDRESS_SCHEMA]},
                                             "example": '{"type":"PushEvent"}\n{"type":"PushEvent"}\n'}},
    }}


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": _STATUS_TEXT.get(s, "error")} for s in statuses}


_STATUS_TEXT = {
    400: "bad input (invalid argument, unparseable input)",
    404: "not found",
    408: "the body stopped arriving, or arrived too slowly (body_timeout)",
    409: "conflict (e.g. a PSF by that name is active)",
    413: "body or record too large",
    415: "unsupported Content-Encoding or Content-Type",
    422: "invalid request body or expression, or rejected records (on_error=reject)",
    501: "not implemented",
    503: "the store is closed (shutting down); or too many ingests are running (too_many_ingests): retry "
         "after the Retry-After header's seconds",
    507: "no space left on the store's disk (disk_full); acknowledged records are kept",
}

INGEST_BODY = {"requestBody": {
    "required": True,
    "description": "Records as NDJSON, or one JSON document (Content-Type: application/json: an array's "
                   "elements are the records, any other value is one record), "
                   "optionally gzipped (Content-Encoding: gzip, or a gzip body of any type). Streamed: "
                   "the body is never held whole in memory.",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary"},
                                 "example": '{"type":"PushEvent","repo":{"name":"torvalds/linux"}}\n'},
        "application/json": {"schema": {"description": "one JSON document: an array's elements are the "
                                                        "records, any other value is one record"},
                             "example": [{"type": "PushEvent"}]},
        "application/gzip": {"schema": {"type": "string", "format": "binary"}},
    },
}}
