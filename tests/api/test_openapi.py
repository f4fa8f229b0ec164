"""Answers agree with the OpenAPI description: every status an operation
answers with is declared, and every JSON (or NDJSON) body validates against
the schema declared for it. Checked on chosen requests (each operation's 422,
records that are not objects) and by schemathesis on generated ones.

Bodies are validated with a JSON Schema 2020-12 validator against the spec
itself (OpenAPI 3.1 schemas are 2020-12), not with schemathesis's own
response check: that one rewrites `prefixItems` nested under `items` (our
PSF ranges, `[from, to]` pairs) into draft-4 tuples and then refuses its own
rewrite as an invalid schema."""
from __future__ import annotations

import json
import os
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

import shoal
from shoal.api import create_app
from shoal.config import KiB

from .conftest import assert_error

# Records of every JSON kind: all are stored as sent, and GET /records/{a} answers them as they are.
RECORDS = [b'{"type":"A","n":1}', b'5', b'"str"', b'[1,2]', b'true', b'null', b'-0.5e3']


def _declared(spec: dict, path: str, method: str, status: int) -> dict:
    op = spec["paths"][path][method.lower()]
    assert str(status) in op["responses"], f"{method} {path} answers {status}, which it does not declare"
    return op["responses"][str(status)]


def check_conforms(spec: dict, path: str, method: str, status: int, content_type: str, body: bytes) -> None:
    """The answer's body validates against the schema `spec` declares for it."""
    declared = _declared(spec, path, method, status)
    media = declared.get("content", {}).get(content_type.split(";")[0].strip())
    assert media is not None, f"{method} {path} {status}: {content_type} is not declared"
    if "schema" not in media:
        return
    if content_type.startswith("application/json"):
        docs = [json.loads(body)]
    elif content_type.startswith("application/x-ndjson"):
        docs = [json.loads(line) for line in body.splitlines()]
    else:
        return
    validator = jsonschema_rs.Draft202012Validator({"components": spec["components"], **media["schema"]})
    for doc in docs:
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (method, path, status, doc, errors)


@pytest.fixture
def described_store(open_store):
    s = open_store()
    s.ingest(b"\n".join(RECORDS) + b"\n")
    s.register_psf("type", "type")
    return s


@pytest.fixture
def spec(described_store) -> dict:
    return create_app(described_store).openapi()


def test_no_operation_answers_422_in_fastapis_own_shape(spec):
    """FastAPI documents a 422 `HTTPValidationError` ({"detail": [...]})
    for any operation with parameters that does not declare its own; every
    answer here is an ErrorBody ({"error", "detail": str, ...})."""
    assert "HTTPValidationError" not in json.dumps(spec)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert resp["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody"), \
                        (method, path, status)


# One request per operation that takes parameters, answered 422 by validation.
INVALID = [
    ("POST", "/records", "/records?durable=maybe", {}),
    ("GET", "/records/{address}", "/records/abc", {}),
    ("DELETE", "/keys/{key}", "/keys/k?durable=maybe", {}),
    ("POST", "/query", "/query", {"json": {"psf": 3}}),
    ("GET", "/psfs/{name}/records", "/psfs/type/records?limit=-1", {}),
    ("POST", "/scan", "/scan", {"json": {"expr": 1}}),
    ("POST", "/psfs", "/psfs", {"json": {"name": ""}}),
    ("POST", "/compact", "/compact", {"json": {}}),
]


@pytest.mark.anyio
@pytest.mark.parametrize("method, path, url, kw", INVALID, ids=[f"{m} {p}" for m, p, _, _ in INVALID])
async def test_422_answers_match_the_spec(described_store, spec, method, path, url, kw):
    app = create_app(described_store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as c:
        r = await c.request(method, url, **kw)
    assert_error(r, 422, "validation_error")
    check_conforms(spec, path, method, 422, r.headers["content-type"], r.content)


@pytest.mark.anyio
async def test_path_parameter_operations_declare_422_as_errorbody(spec):
    """GET/DELETE /psfs/{name} and GET /keys/{key} take any text, so their
    422 is never answered in practice; it is declared (FastAPI does for any
    operation with parameters) and must then be the one error shape."""
    for path, method in (("/psfs/{name}", "get"), ("/psfs/{name}", "delete"), ("/keys/{key}", "get"),
                         ("/keys/{key}", "delete")):
        schema = _declared(spec, path, method, 422)["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorBody"), (method, path)


@pytest.mark.anyio
async def test_records_that_are_not_objects_match_the_spec(described_store, spec):
    app = create_app(described_store)
    addresses = [r.address for r in described_store.scan("`true`", order="oldest")]
    assert len(addresses) == len(RECORDS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as c:
        for address, raw in zip(addresses, RECORDS):
            r = await c.get(f"/records/{address}")
            assert r.status_code == 200 and r.content == raw
            check_conforms(spec, "/records/{address}", "GET", 200, r.headers["content-type"], r.content)
        r = await c.post("/scan", json={"expr": "`true`"})
        check_conforms(spec, "/scan", "POST", 200, r.headers["content-type"], r.content)
        r = await c.post("/scan?with_address=true", json={"expr": "`true`"})
        check_conforms(spec, "/scan", "POST", 200, r.headers["content-type"], r.content)


# ---- generated requests (schemathesis) ----

# Examples per operation and mode: CI-sized by default; a longer run sets
# SHOAL_FUZZ_EXAMPLES (README, "Testing").
FUZZ_EXAMPLES = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "15"))

# Bodies of these types are bytes as far as the spec says: send them as such.
for _media in ("application/x-ndjson", "application/gzip"):
    schemathesis.serializer.alias(_media, "application/octet-stream")


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory):
    store = shoal.open(tmp_path_factory.mktemp("openapi") / "store", page_size_bytes=16 * KiB,
                       memory_budget_bytes=64 * KiB, segment_size_bytes=64 * KiB)
    store.ingest(b"\n".join(RECORDS) + b"\n")
    store.register_psf("type", "type")
    yield create_app(store)
    store.close()


def _operations(app) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_generated_requests_get_answers_the_spec_declares(fuzzed_app, mode):
    """Per operation, requests schemathesis makes from the spec (valid ones,
    and invalid ones): each answer's status and body are what the spec
    declares. (schemathesis's pytest plugin does not run under pytest 9:
    hypothesis drives its strategies here.)"""
    spec: dict[str, Any] = fuzzed_app.openapi()
    for operation in _operations(fuzzed_app):

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            if case.operation.path == "/tail" and isinstance(case.query, dict):
                # a stream that runs until its client leaves: ended once it is idle
                case.query = dict(case.query, timeout=0)
            response = case.call()
            ctype = response.headers.get("content-type", [""])
            check_conforms(spec, case.operation.path, case.method, response.status_code,
                           ctype[0] if isinstance(ctype, list) else ctype, response.content)
            case.validate_response(response, checks=[status_code_conformance, content_type_conformance])

        try:
            check()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label
