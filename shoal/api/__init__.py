"""The HTTP face of a store: a FastAPI app with no logic of its own
(`create_app` in app.py), `Tokens` for who may call it (auth.py), and
`serve()` to run it with uvicorn (server.py). Both are imported on first
use, so `shoal.api.server` imports without the web stack and can say which
extra to install."""

__all__ = ["Tokens", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app
        return create_app
    if name == "Tokens":
        from .auth import Tokens
        return Tokens
    raise AttributeError(f"module 'shoal.api' has no attribute {name!r}")
