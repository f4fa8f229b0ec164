"""The HTTP face of a store: a FastAPI app with no logic of its own
(`create_app`), and `serve()` to run it with uvicorn (`shoal.api.server`)."""
from .app import create_app

__all__ = ["create_app"]
