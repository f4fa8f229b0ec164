"""/docs works offline: the page refers only to URLs of the server itself,
each of which answers (Swagger UI's JavaScript and CSS from the installed
package, the OpenAPI description), and the Swagger UI served renders
OpenAPI 3.1, the version the API is described in. /redoc is off."""
from __future__ import annotations

import re

import httpx
import pytest

from shoal.api import create_app
from shoal.api import docs as api_docs
from shoal.api.auth import Tokens

pytestmark = pytest.mark.anyio

_REFERENCES = re.compile(r"""(?:src|href)="([^"]*)"|url: '([^']*)'|\+ '([^']*)'""")


def references(page: str) -> list[str]:
    """Every URL the page loads or points Swagger UI at: script src, link
    href, the OpenAPI url and the OAuth2 redirect."""
    return [next(g for g in m.groups() if g is not None) for m in _REFERENCES.finditer(page)]


async def test_docs_refer_only_to_local_urls_that_answer(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "://" not in page  # no CDN, no absolute URL of any host
    refs = references(page)
    assert sorted(refs) == ["/docs/assets/favicon-32x32.png", "/docs/assets/swagger-ui-bundle.js",
                            "/docs/assets/swagger-ui.css", "/docs/oauth2-redirect", "/openapi.json"]
    kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
    for ref in refs:
        got = await client.get(ref)
        assert got.status_code == 200 and got.content, ref
        kind = next((k for ext, k in kinds.items() if ref.endswith(ext)), "text/html")
        assert kind in got.headers["content-type"], (ref, got.headers["content-type"])
    js = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    assert "exports.SwaggerUIBundle" in js  # what the page calls
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1.")
    assert "openapi: 3.1" in js  # Swagger UI 5: it renders 3.1 (4.x shows "Unable to render this definition")
    assert "/docs/assets/swagger-ui.css" in page and "SwaggerUIBundle(" in page


async def test_redoc_is_off_and_docs_are_not_in_the_description(client):
    assert (await client.get("/redoc")).status_code == 404
    spec = (await client.get("/openapi.json")).json()
    assert not [p for p in spec["paths"] if p.startswith("/docs")]


async def test_docs_need_no_token(store):
    app = create_app(store, tokens=Tokens.of(write=["w" * 32]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as c:
        assert (await c.get("/stats")).status_code == 401
        page = (await c.get("/docs")).text
        for ref in references(page):
            assert (await c.get(ref)).status_code == 200, ref


def test_swagger_ui_4_or_none_is_not_used(monkeypatch, tmp_path):
    """An old swagger-ui-bundle (Swagger UI 4, same import name) cannot
    render the API's OpenAPI 3.1: it counts as missing."""
    import swagger_ui_bundle
    assert api_docs.swagger_ui_assets() is not None
    old = tmp_path / "swagger-ui-4.15.5"
    old.mkdir()
    (old / "swagger-ui-bundle.js").write_text("/* 4 */")
    monkeypatch.setattr(swagger_ui_bundle, "swagger_ui_path", old)
    assert api_docs.swagger_ui_assets() is None
    monkeypatch.setattr(swagger_ui_bundle, "swagger_ui_path", tmp_path / "swagger-ui-5.31.0")  # empty
    assert api_docs.swagger_ui_assets() is None


async def test_without_the_bundle_docs_fall_back_to_the_cdn(store, monkeypatch, caplog):
    monkeypatch.setattr(api_docs, "swagger_ui_assets", lambda: None)
    app = create_app(store)
    assert "Swagger UI 5 is not installed" in caplog.text
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as c:
        page = (await c.get("/docs")).text
        assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js" in references(page)
        assert (await c.get("/docs/assets/swagger-ui.css")).status_code == 404
