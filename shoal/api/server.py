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
from typing import Any

from ..config import parse_size
from ..errors import ShoalError
from ..store.store import open as open_store
from .allocator import limit_arenas, start_trimming

log = logging.getLogger("shoal.api")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Connections (and their requests) at once; past it uvicorn answers 503.
# Slow or idle clients hold only a socket each, but a socket is a file
# descriptor, and the store needs its own (segments, checkpoints).
DEFAULT_MAX_CONNECTIONS = 512


def serve(data_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
          memory: int | str | None = None, page_size: int | str | None = None,
          max_body: int | str | None = None, log_level: str = "info", access_log: bool = True,
          graceful_timeout_s: float | None = 60.0, max_ingests: int | None = None,
          body_idle_timeout_s: float | None = None, body_min_rate: int | str | None = None,
          send_timeout_s: float | None = None, max_connections: int | None = None,
          **store_settings: Any) -> None:
    """Open (create or recover) the store in `data_dir` and serve it until
    SIGINT/SIGTERM. Sizes take ints or strings such as "1GiB" (parse_size):
    `memory` is the in-memory log budget, `page_size` the log page size (only
    when creating a store), `max_body` the largest POST /records body.
    What slow clients may hold (limits.py; None: the default): `max_ingests`
    running at once, `body_idle_timeout_s` and `body_min_rate` (bytes/s) for
    request bodies, `send_timeout_s` for answers (0: wait forever),
    `max_connections` open at once (beyond, uvicorn answers 503; each idle
    or slow connection holds a file descriptor, so the default keeps below
    the usual limit of 1,024).
    Other StoreConfig fields may be passed as keywords."""
    try:
        import uvicorn

        from .app import create_app
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
    limit_arenas()  # before the threads that allocate start (allocator.py says why)
    trimming = start_trimming()
    settings = dict(store_settings)
    if memory is not None:
        settings["memory_budget_bytes"] = parse_size(memory)
    if page_size is not None:
        settings["page_size_bytes"] = parse_size(page_size)
    store = open_store(data_dir, **settings)
    try:
        rec = store.recovery
        log.info("opened %s: %d records, tail address %d (checkpoint %s, %d replayed)", data_dir,
                 store.stats()["records"], store.tail_address, rec.checkpoint_id, rec.replayed_records)
        app = create_app(store, max_body_bytes=None if max_body is None else parse_size(max_body),
                         close_store=True, limits=limits)
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                                loop="uvloop", http="httptools", lifespan="on",
                                timeout_graceful_shutdown=graceful_timeout_s,
                                limit_concurrency=max_connections or DEFAULT_MAX_CONNECTIONS)
        server = _server(config, app)
        with _signals_end_quietly():
            server.run()
    finally:
        store.close()  # idempotent; the lifespan has checkpointed and closed it on a clean shutdown
        if trimming is not None:
            trimming.set()


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    """The flags of what slow clients may hold (limits.py), for
    `python -m shoal.api.server` and `shoal serve` alike."""
    p.add_argument("--max-ingests", type=int, metavar="N",
                   help="ingests (POST /records) running at once; one more answers 503 with Retry-After "
                        "(default 16)")
    p.add_argument("--body-idle-timeout", type=float, metavar="SECONDS",
                   help="end an ingest whose body sends no byte for this long: 408 (default 30)")
    p.add_argument("--body-min-rate", metavar="BYTES",
                   help="end an ingest whose body arrives slower than this many bytes/s, averaged over each "
                        "--body-idle-timeout of waiting: 408 (default 500; 0: no minimum)")
    p.add_argument("--send-timeout", type=float, metavar="SECONDS",
                   help="close the connection of a client that takes nothing of its answer for this long "
                        "(default 60; 0: wait forever)")
    p.add_argument("--max-connections", type=int, metavar="N",
                   help=f"connections open at once; beyond, 503 (default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--max-active-psfs", type=int, metavar="N",
                   help="PSFs active at once; registering one more answers 409 too_many_psfs (default 1024)")
    p.add_argument("--max-inactive-psfs", type=int, metavar="N",
                   help="deregistered PSFs kept (queries by their names still answer); beyond, the one "
                        "deregistered longest ago is forgotten (default 1024)")


def limit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """serve()'s keywords for the flags of add_limit_flags (the PSF limits
    are StoreConfig fields: passed only when given)."""
    psfs = {k: getattr(args, k) for k in ("max_active_psfs", "max_inactive_psfs") if getattr(args, k) is not None}
    return {"max_ingests": args.max_ingests, "body_idle_timeout_s": args.body_idle_timeout,
            "body_min_rate": args.body_min_rate, "send_timeout_s": args.send_timeout,
            "max_connections": args.max_connections, **psfs}


def _server(config: Any, app: Any) -> Any:
    import uvicorn

    from .cancel import cancel_all

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            cancel_all(app)  # first: the graceful wait would otherwise wait for running scans
            await super().shutdown(sockets)

    return Server(config)


def add_expression_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the expression limits (StoreConfig, per open), for
    `python -m shoal.api.server` and `shoal serve` alike."""
    p.add_argument("--max-expression-chars", type=int, metavar="N",
                   help="longest PSF or scan expression: 422 expression_too_long beyond (default 4096)")
    p.add_argument("--max-expression-depth", type=int, metavar="N",
                   help="deepest nesting of an expression: 422 expression_too_deep beyond (default 64)")
    p.add_argument("--max-eval-steps", type=int, metavar="N",
                   help="steps one expression may take on one record (default 100000); a PSF over it "
                        "indexes no value for the record, a scan stops: 422 evaluation_budget_exceeded")
    p.add_argument("--max-eval-bytes", metavar="SIZE",
                   help="bytes of values one expression may build on one record, e.g. 4MiB (default 1MiB); "
                        "as --max-eval-steps")


def expression_settings(args: argparse.Namespace) -> dict[str, Any]:
    """StoreConfig fields for the flags of add_expression_flags that were given."""
    out: dict[str, Any] = {}
    for name in ("max_expression_chars", "max_expression_depth", "max_eval_steps"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.max_eval_bytes is not None:
        out["max_eval_bytes"] = parse_size(args.max_eval_bytes)
    return out


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
    p = argparse.ArgumentParser(prog="python -m shoal.api.server", description="Serve a shoal store over HTTP.")
    p.add_argument("--data", default="./shoal-data", help="data directory (created if absent, recovered if present)")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--memory", help="memory budget for log pages, e.g. 1GiB")
    p.add_argument("--page-size", help="log page size for a new store, e.g. 4MiB")
    p.add_argument("--max-body", help="largest POST /records body, e.g. 10GiB (default: no limit)")
    add_expression_flags(p)
    add_limit_flags(p)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--no-access-log", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    try:
        serve(args.data, args.host, args.port, memory=args.memory, page_size=args.page_size,
              max_body=args.max_body, log_level=args.log_level, access_log=not args.no_access_log,
              **limit_settings(args), **expression_settings(args))
    except ShoalError as exc:
        print(f"shoal serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
