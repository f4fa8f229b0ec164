"""Run the HTTP API with uvicorn (httptools + uvloop): `serve(data_dir, ...)`,
or `python -m shoal.api.server --data DIR`.

Shutdown: on SIGINT or SIGTERM uvicorn stops accepting connections and lets
in-flight requests finish (at most `graceful_timeout_s`; an ingest cut there
ends cleanly, see streaming.py); then the app's lifespan writes a checkpoint
and closes the store, and serve() returns, so the process exits 0. A second
SIGINT forces uvicorn to stop waiting. Scans in flight are cut as shutdown
begins (cancel.py): a scan may run for long, and a read can be asked again.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..config import StoreConfig, parse_size
from ..errors import InvalidArgument, ShoalError, StoreLocked
from ..engine import open as open_store
from .allocator import limit_arenas, start_trimming
from .settings import (DEFAULT_DATA, DEFAULT_HOST, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT, add_serve_flags,
                       exposure_warnings, print_banner, resolve, serve_kwargs)

log = logging.getLogger("shoal.api")


def serve(data_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
          memory: int | str | None = None, page_size: int | str | None = None,
          max_body: int | str | None = None, log_level: str = "info", access_log: bool = True,
          graceful_timeout_s: float | None = 60.0, max_ingests: int | None = None,
          ingest_threads: int | None = None,
          body_idle_timeout_s: float | None = None, body_min_rate: int | str | None = None,
          send_timeout_s: float | None = None, max_connections: int | None = None,
          token: str | Sequence[str] | None = None, read_token: str | Sequence[str] | None = None,
          ssl_certfile: str | os.PathLike | None = None, ssl_keyfile: str | os.PathLike | None = None,
          es_index_field: str | None = "_index", opener: Callable[[str | os.PathLike, dict], Any] | None = None,
          **store_settings: Any) -> None:
    """Open (create or recover) the store in `data_dir` and serve it until
    SIGINT/SIGTERM. Sizes take ints or strings such as "1GiB" (parse_size):
    `memory` is the in-memory log budget, `page_size` the log page size (only
    when creating a store), `max_body` the largest POST /records body.
    What slow clients may hold (limits.py; None: the default): `max_ingests`
    running at once (`ingest_threads` each: one per core by default),
    `body_idle_timeout_s` and `body_min_rate` (bytes/s) for
    request bodies, `send_timeout_s` for answers (0: wait forever),
    `max_connections` open at once (beyond, uvicorn answers 503; each idle
    or slow connection holds a file descriptor, so the default keeps below
    the usual limit of 1,024).
    Access (auth.py): `token` is a write token (or a list of them), and
    `read_token` read tokens; without a write token every request may write,
    and serving beyond loopback so prints a warning. `ssl_certfile` (and
    `ssl_keyfile`, unless the key is in the certificate file) serve HTTPS.
    `es_index_field` names the field the Elasticsearch bulk endpoint adds to
    each record for its index ("" or None: none; README, Elasticsearch).
    Other StoreConfig fields may be passed as keywords. `opener(data_dir,
    settings)` opens what is served instead of a store (`shoal cluster
    serve`: a cluster, which answers the same calls)."""
    try:
        import uvicorn

        from .app import create_app
        from .auth import Tokens
        from .bulk import parse_index_field
        from .limits import ServerLimits
    except ImportError as exc:
        raise ImportError(f"serving needs the server extra (pip install 'shoal[server]'): {exc}") from exc

    chosen: dict[str, Any] = {}
    if max_ingests is not None:
        chosen["max_ingests"] = max_ingests
    if body_idle_timeout_s is not None:
        chosen["body_idle_timeout_s"] = body_idle_timeout_s
    if body_min_rate is not None:
        chosen["body_min_rate_bytes_per_s"] = parse_size(body_min_rate)
    if send_timeout_s is not None:
        chosen["send_timeout_s"] = send_timeout_s or None  # 0: wait forever
    limits = ServerLimits(**chosen)
    index_field = parse_index_field(es_index_field)
    tokens = Tokens.of(_listed(token), _listed(read_token))
    if ssl_keyfile and not ssl_certfile:
        raise InvalidArgument("--ssl-keyfile needs --ssl-certfile")
    for what, path in (("certificate", ssl_certfile), ("key", ssl_keyfile)):
        if path and not os.path.isfile(path):
            raise InvalidArgument(f"TLS {what} file {path} does not exist")
    print_banner(exposure_warnings(host, tokens.enabled, bool(ssl_certfile)))
    for short in tokens.short():
        log.warning("%s: tokens shorter than 16 characters can be guessed; use e.g. `openssl rand -hex 32`", short)
    limit_arenas()  # before the threads that allocate start (allocator.py says why)
    trimming = start_trimming()
    settings = dict(store_settings)
    if memory is not None:
        settings["memory_budget_bytes"] = parse_size(memory)
    if page_size is not None:
        settings["page_size_bytes"] = page = parse_size(page_size)
        # A segment file holds whole pages: pages over the default segment
        # size (256 MiB) get segments of one page each.
        settings.setdefault("segment_size_bytes", max(StoreConfig().segment_size_bytes, page))
    store = open_store(data_dir, **settings) if opener is None else opener(data_dir, settings)
    try:
        rec = getattr(store, "recovery", None)
        if rec is not None:
            log.info("opened %s: %d records, tail address %d (checkpoint %s, %d replayed)", data_dir,
                     store.stats()["records"], store.tail_address, rec.checkpoint_id, rec.replayed_records)
        else:
            log.info("opened %s: %d records", data_dir, store.stats()["records"])
        app = create_app(store, max_body_bytes=None if max_body is None else parse_size(max_body),
                         close_store=True, limits=limits, tokens=tokens, es_index_field=index_field,
                         ingest_threads=ingest_threads)
        tls = {"ssl_certfile": os.fspath(ssl_certfile), "ssl_keyfile": ssl_keyfile and os.fspath(ssl_keyfile)} \
            if ssl_certfile else {}
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                                loop="uvloop", http="httptools", lifespan="on",
                                timeout_graceful_shutdown=graceful_timeout_s,
                                limit_concurrency=max_connections or DEFAULT_MAX_CONNECTIONS, **tls)
        server = _server(config, app)
        with _signals_end_quietly():
            server.run()
    finally:
        store.close()  # idempotent; the lifespan has checkpointed and closed it on a clean shutdown
        if trimming is not None:
            trimming.set()


def _listed(tokens: str | Sequence[str] | None) -> list[str]:
    if tokens is None:
        return []
    return [tokens] if isinstance(tokens, str) else list(tokens)


def _server(config: Any, app: Any) -> Any:
    import uvicorn

    from .cancel import cancel_all

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            cancel_all(app)  # first: the graceful wait would otherwise wait for running scans
            await super().shutdown(sockets)

    return Server(config)


class _signals_end_quietly:
    """uvicorn re-raises the signal that stopped it, after its graceful
    shutdown, through the handler in place before it started. A requested
    stop is a success: make that handler a no-op so serve() returns."""

    def __enter__(self) -> None:
        self._saved = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._saved[sig] = signal.signal(sig, lambda *_: None)
            except ValueError:  # not the main thread: uvicorn does not capture signals either
                pass

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """`python -m shoal.api.server`: the same flags as `shoal serve`."""
    p = argparse.ArgumentParser(prog="python -m shoal.api.server", description="Serve a shoal store over HTTP.")
    add_serve_flags(p)
    args = p.parse_args(argv)
    return run_from_args(args, p)


def run_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                  opener: Callable[[str | os.PathLike, dict], Any] | None = None, prog: str = "shoal serve") -> int:
    """Resolve the settings (flags > environment > config file > defaults)
    and serve (what `opener` opens, if given); 1 with a message on stderr
    for a setting or store error."""
    settings: dict[str, Any] = {"data": None}
    try:
        settings = resolve(args, parser)
        logging.basicConfig(level=settings["log_level"].upper(), format="%(levelname)s:     %(name)s: %(message)s")
        kwargs = serve_kwargs(settings)
        serve(kwargs.pop("data_dir"), opener=opener, **kwargs)
    except StoreLocked as exc:
        print(f"{prog}: the data directory {settings['data'] or DEFAULT_DATA} is held by another process "
              f"(is a server already running on it?): {exc}", file=sys.stderr)
        return 1
    except ShoalError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
