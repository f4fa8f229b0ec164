"""The interactive API docs (/docs), served with no network access.

FastAPI's own /docs page loads Swagger UI's JavaScript and CSS from a CDN,
so on a machine without internet it is blank. Here the page points at
copies the `swagger-ui-bundle-v2` package ships (a dependency of the
`server` extra), served from /docs/assets/. It must be Swagger UI 5 or
later: the API is described as OpenAPI 3.1, which Swagger UI 4 (what the
older `swagger-ui-bundle` package ships, under the same import name)
refuses to render. ReDoc (/redoc) is off: it too loads from a CDN, and
/docs shows the same description from one bundle.

Without a usable bundle, /docs falls back to FastAPI's CDN page (with a
warning in the log), which works wherever the browser is online.

/docs, /docs/assets/... and /docs/oauth2-redirect need no token (auth.py's
OPEN_PATHS and OPEN_PREFIXES).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("shoal.api")

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Swagger UI 5.0 is the first to render OpenAPI 3.1.
_MIN_MAJOR = 5


def swagger_ui_assets() -> Path | None:
    """The directory of the installed Swagger UI (swagger-ui-bundle-v2), or
    None when it is missing or older than Swagger UI 5."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    m = re.fullmatch(r"swagger-ui-(\d+)\..*", path.name)  # vendor/swagger-ui-5.31.0
    if m is None or int(m.group(1)) < _MIN_MAJOR or not (path / "swagger-ui-bundle.js").is_file():
        return None
    return path


def install(app: FastAPI) -> None:
    """Serve /docs (and its assets and OAuth2 redirect) on `app`, which was
    made with docs_url=None and redoc_url=None."""
    assets = swagger_ui_assets()
    if assets is None:
        log.warning("Swagger UI 5 is not installed (pip install 'shoal[server]' brings swagger-ui-bundle-v2): "
                    "/docs loads it from a CDN, and is blank without internet access")
        js = css = favicon = None
    else:
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")
        js, css, favicon = "swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        local = {} if js is None else {
            "swagger_js_url": f"{root}{ASSETS_URL}/{js}", "swagger_css_url": f"{root}{ASSETS_URL}/{css}",
            "swagger_favicon_url": f"{root}{ASSETS_URL}/{favicon}"}
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
                                   swagger_ui_parameters=app.swagger_ui_parameters, **local)

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
