"""The server's settings, one set of names wherever they come from: flags
(`shoal serve`, `python -m shoal.api.server`), the environment, and a TOML
config file (`--config FILE` or $SHOAL_CONFIG) whose keys are the flags'
names without the dashes:

    # shoal.toml
    data = "/var/lib/shoal"
    host = "0.0.0.0"
    port = 8765
    memory = "4GiB"
    max-body = "10GiB"
    token-file = "/etc/shoal/write-token"
    read-token-file = "/etc/shoal/read-tokens"
    ssl-certfile = "/etc/shoal/cert.pem"
    ssl-keyfile = "/etc/shoal/key.pem"

Precedence, highest first: a flag given on the command line, the
environment ($SHOAL_DATA, $SHOAL_TOKEN, $SHOAL_READ_TOKEN), the config file,
the defaults. `_` and `-` are the same in a key; an unknown key, or a value of
the wrong type, is an error that names the key and the file. Relative paths
in the file are taken relative to the file's folder.

Every flag here is defined with default SUPPRESS, so a namespace holds only
what the command line gave; `DEFAULTS` fills the rest.
"""
from __future__ import annotations

import argparse
import difflib
import ipaddress
import logging
import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..config import parse_size
from ..errors import InvalidArgument

log = logging.getLogger("shoal.api")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_DATA = "./shoal-data"
# Connections (and their requests) at once; past it uvicorn answers 503.
# Slow or idle clients hold only a socket each, but a socket is a file
# descriptor, and the store needs its own (segments, checkpoints).
DEFAULT_MAX_CONNECTIONS = 512

DEFAULTS: dict[str, Any] = {
    "data": None, "host": DEFAULT_HOST, "port": DEFAULT_PORT, "memory": "1GiB", "page_size": None,
    "max_body": None, "key": None, "retain": None, "retain_seconds": None, "timestamp": None,
    "time_field": None, "time_bucket": None, "compression": None,
    "max_ingests": None, "ingest_threads": None, "body_idle_timeout": None, "body_min_rate": None, "send_timeout": None,
    "max_connections": None, "max_active_psfs": None, "max_inactive_psfs": None,
    "max_expression_chars": None, "max_expression_depth": None, "max_eval_steps": None, "max_eval_bytes": None,
    "token": [], "read_token": [], "token_file": None, "read_token_file": None,
    "ssl_certfile": None, "ssl_keyfile": None, "es_index_field": "_index",
    "log_level": "info", "no_access_log": False, "config": None,
}
# Settings that hold a path: relative to the config file's folder there.
_PATHS = ("data", "token_file", "read_token_file", "ssl_certfile", "ssl_keyfile")
_ENV = {"data": "SHOAL_DATA", "token": "SHOAL_TOKEN", "read_token": "SHOAL_READ_TOKEN"}


def size_arg(text: str) -> str:
    """An argparse type: a size such as 4GiB or 1000000, checked, kept as text."""
    try:
        parse_size(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    """Every setting of `shoal serve` and `python -m shoal.api.server`."""
    S = argparse.SUPPRESS
    p.add_argument("--config", metavar="FILE", default=S,
                   help="TOML file of settings named as these flags (default $SHOAL_CONFIG); flags and the "
                        "environment override it")
    p.add_argument("--data", metavar="DIR", default=S,
                   help=f"data directory, created if absent, recovered if present (default $SHOAL_DATA or "
                        f"{DEFAULT_DATA})")
    p.add_argument("--host", default=S, help=f"address to listen on (default {DEFAULT_HOST}; anything else "
                                             f"without --token prints a warning)")
    p.add_argument("--port", type=int, default=S, help=f"default {DEFAULT_PORT}")
    p.add_argument("--memory", type=size_arg, default=S, help="memory for log pages (default 1GiB)")
    p.add_argument("--page-size", type=size_arg, default=S, help="log page size of a new store (default 4MiB)")
    p.add_argument("--max-body", type=size_arg, default=S, help="largest POST /records body (default: no limit)")

    a = p.add_argument_group("access (README: Access)")
    a.add_argument("--token", action="append", metavar="TOKEN", default=S,
                   help="a write token: requests must send `Authorization: Bearer TOKEN` (default $SHOAL_TOKEN; "
                        "repeat to accept several, e.g. while rotating). Without one, anyone who reaches the "
                        "port may write")
    a.add_argument("--read-token", action="append", metavar="TOKEN", default=S,
                   help="a read token: GETs, /query and /scan only (default $SHOAL_READ_TOKEN; repeatable; "
                        "needs a write token)")
    a.add_argument("--token-file", metavar="FILE", default=S,
                   help="write tokens, one per line (# comments), kept out of the process list")
    a.add_argument("--read-token-file", metavar="FILE", default=S, help="read tokens, one per line")
    a.add_argument("--ssl-certfile", metavar="FILE", default=S, help="serve HTTPS with this certificate (PEM)")
    a.add_argument("--ssl-keyfile", metavar="FILE", default=S, help="the certificate's private key (PEM)")

    s = p.add_argument_group("store")
    s.add_argument("--key", metavar="EXPR", default=S,
                   help="create a keyed store: JMESPath giving each record's key")
    s.add_argument("--retain", type=size_arg, metavar="SIZE", default=S,
                   help="retention: keep about the newest SIZE of log (background compaction)")
    s.add_argument("--retain-seconds", type=float, metavar="N", default=S,
                   help="retention: drop records older than N seconds (needs --timestamp)")
    s.add_argument("--timestamp", metavar="EXPR", default=S,
                   help="JMESPath giving a record's time (epoch seconds or ms, or ISO-8601)")
    s.add_argument("--time-field", metavar="EXPR", default=S,
                   help="JMESPath giving each record's time (epoch seconds or ms, or ISO-8601): every query, "
                        "count, group count and scan then takes since/until (indexed in buckets of "
                        "--time-bucket seconds)")
    s.add_argument("--time-bucket", type=float, metavar="SECONDS", default=S,
                   help="with --time-field: the time index's bucket (default 300)")
    s.add_argument("--compression", choices=["none", "zstd"], default=S,
                   help="create a store whose written log is kept compressed (zstd: about a quarter of "
                        "the disk; README: Compressed cold data); fixed when the store is created")

    g = p.add_argument_group("limits")
    g.add_argument("--max-ingests", type=int, metavar="N", default=S,
                   help="ingests (POST /records) running at once; one more answers 503 with Retry-After "
                        "(default 16)")
    g.add_argument("--ingest-threads", type=int, metavar="N", default=S,
                   help="threads one ingest's body is parsed and indexed on, its records appended in order "
                        "(default: one per core, at most 8; concurrent ingests also run at once)")
    g.add_argument("--body-idle-timeout", type=float, metavar="SECONDS", default=S,
                   help="end an ingest whose body sends no byte for this long: 408 (default 30)")
    g.add_argument("--body-min-rate", type=size_arg, metavar="BYTES", default=S,
                   help="end an ingest whose body arrives slower than this many bytes/s, averaged over each "
                        "--body-idle-timeout of waiting: 408 (default 500; 0: no minimum)")
    g.add_argument("--send-timeout", type=float, metavar="SECONDS", default=S,
                   help="close the connection of a client that takes nothing of its answer for this long "
                        "(default 60; 0: wait forever)")
    g.add_argument("--max-connections", type=int, metavar="N", default=S,
                   help=f"connections open at once; beyond, 503 (default {DEFAULT_MAX_CONNECTIONS})")
    g.add_argument("--max-active-psfs", type=int, metavar="N", default=S,
                   help="PSFs active at once; registering one more answers 409 too_many_psfs (default 1024)")
    g.add_argument("--max-inactive-psfs", type=int, metavar="N", default=S,
                   help="deregistered PSFs kept (queries by their names still answer); beyond, the one "
                        "deregistered longest ago is forgotten (default 1024)")
    g.add_argument("--max-expression-chars", type=int, metavar="N", default=S,
                   help="longest PSF or scan expression: 422 expression_too_long beyond (default 4096)")
    g.add_argument("--max-expression-depth", type=int, metavar="N", default=S,
                   help="deepest nesting of an expression: 422 expression_too_deep beyond (default 64)")
    g.add_argument("--max-eval-steps", type=int, metavar="N", default=S,
                   help="steps one expression may take on one record (default 100000); a PSF over it "
                        "indexes no value for the record, a scan stops: 422 evaluation_budget_exceeded")
    g.add_argument("--max-eval-bytes", type=size_arg, metavar="SIZE", default=S,
                   help="bytes of values one expression may build on one record, e.g. 4MiB (default 1MiB); "
                        "as --max-eval-steps")

    e = p.add_argument_group("Elasticsearch bulk endpoint (README: Elasticsearch)")
    e.add_argument("--es-index-field", metavar="NAME", default=S,
                   help="field added to each record of POST /_bulk for its index (default _index; '' stores the "
                        "source as sent and keeps no index)")

    o = p.add_argument_group("output")
    o.add_argument("--log-level", default=S, choices=["critical", "error", "warning", "info", "debug"],
                   help="default info")
    o.add_argument("--no-access-log", action="store_true", default=S)


# ---- resolving: flags > environment > config file > defaults ----

def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser,
            environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Every setting's value (DEFAULTS' keys), from the namespace of a parse
    with add_serve_flags, the environment and the config file."""
    environ = os.environ if environ is None else environ
    given = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    for name in ("token", "read_token"):  # `shoal --token T serve`: the top-level flag is a string
        if isinstance(given.get(name), str):
            given[name] = [given[name]]
    config_path = given.get("config") or environ.get("SHOAL_CONFIG") or None
    from_file = load_config(config_path, parser) if config_path else {}
    from_env: dict[str, Any] = {}
    for name, var in _ENV.items():
        if environ.get(var):
            from_env[name] = [environ[var]] if isinstance(DEFAULTS[name], list) else environ[var]
    return {**DEFAULTS, **from_file, **from_env, **given, "config": config_path}


def load_config(path: str | os.PathLike, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The settings in a TOML file, checked against the flags' names and types."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise InvalidArgument(f"config file {path} cannot be read: {exc.strerror}") from None
    actions = {a.dest: a for a in parser._actions if a.dest in DEFAULTS}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in actions or name == "config":
            known = sorted(k.replace("_", "-") for k in actions if k != "config")
            near = difflib.get_close_matches(key.replace("_", "-"), known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; known keys: {', '.join(known)}"
            raise InvalidArgument(f"config file {path}: unknown key {key!r}{hint}")
        value = _typed(actions[name], value, f"config file {path}: {key}")
        if name in _PATHS and value is not None:
            value = str((path.parent / value)) if not os.path.isabs(value) else value
        out[name] = value
    return out


def _typed(action: argparse.Action, value: Any, where: str) -> Any:
    """A config value as the flag would have parsed it."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise InvalidArgument(f"{where} must be true or false")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise InvalidArgument(f"{where} must be a string or a list of strings")
        return items
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise InvalidArgument(f"{where} must be a {'number' if action.type in (int, float) else 'string'}")
    if action.type in (int, float):
        if not isinstance(value, (int, float)) or (action.type is int and not isinstance(value, int)):
            raise InvalidArgument(f"{where} must be {'an integer' if action.type is int else 'a number'}")
        return action.type(value)
    if action.type is not None:  # sizes: "4GiB" or a number of bytes
        try:
            return action.type(str(value))
        except argparse.ArgumentTypeError as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
    if not isinstance(value, str):
        raise InvalidArgument(f"{where} must be a string")
    if action.choices and value not in action.choices:
        raise InvalidArgument(f"{where} must be one of {', '.join(action.choices)}")
    return value


# ---- what serve() is called with ----

def read_token_file(path: str) -> list[str]:
    """The tokens in a file, one per line; blank lines and # comments skipped.
    A file others may read is accepted with a warning."""
    try:
        text = Path(path).read_text()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InvalidArgument(f"token file {path} cannot be read: {exc.strerror}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("token file %s can be read by other users (chmod 600 it)", path)
    tokens = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise InvalidArgument(f"token file {path} holds no token")
    return tokens


def serve_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """serve()'s keywords for resolved settings (data dir included as `data_dir`)."""
    s = settings
    out: dict[str, Any] = {
        "data_dir": s["data"] or DEFAULT_DATA, "host": s["host"], "port": s["port"], "memory": s["memory"],
        "page_size": s["page_size"], "max_body": s["max_body"], "log_level": s["log_level"],
        "access_log": not s["no_access_log"], "max_ingests": s["max_ingests"],
        "ingest_threads": s["ingest_threads"],
        "body_idle_timeout_s": s["body_idle_timeout"], "body_min_rate": s["body_min_rate"],
        "send_timeout_s": s["send_timeout"], "max_connections": s["max_connections"],
        "token": list(s["token"]) + (read_token_file(s["token_file"]) if s["token_file"] else []),
        "read_token": list(s["read_token"]) + (read_token_file(s["read_token_file"]) if s["read_token_file"] else []),
        "ssl_certfile": s["ssl_certfile"], "ssl_keyfile": s["ssl_keyfile"],
        "es_index_field": s["es_index_field"],
    }
    store: dict[str, Any] = {}
    for name in ("max_active_psfs", "max_inactive_psfs", "max_expression_chars", "max_expression_depth",
                 "max_eval_steps"):
        if s[name] is not None:
            store[name] = s[name]
    if s["max_eval_bytes"] is not None:
        store["max_eval_bytes"] = parse_size(s["max_eval_bytes"])
    if s["key"]:
        store["key"] = s["key"]
    if s["retain"]:
        store["retain_bytes"] = parse_size(s["retain"])
    if s["retain_seconds"] is not None:
        store["retain_seconds"] = s["retain_seconds"]
    if s["timestamp"]:
        store["timestamp_expression"] = s["timestamp"]
    if s["time_field"]:
        store["time_field"] = s["time_field"]
    if s["time_bucket"] is not None:
        store["time_bucket_seconds"] = s["time_bucket"]
    if s["compression"]:
        store["compression"] = s["compression"]
    return {**out, **store}


# ---- what to warn about before serving ----

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def exposure_warnings(host: str, auth: bool, tls: bool) -> list[str]:
    """What is unsafe about serving on `host` with these settings."""
    if is_loopback(host):
        return []
    if not auth:
        return [f"shoal is listening on {host}, beyond this machine, WITHOUT AUTHENTICATION: anyone who can "
                f"reach the port can read every record, ingest, register PSFs and compact the log away. Give "
                f"it a write token (--token-file, --token or $SHOAL_TOKEN), or listen on 127.0.0.1."]
    if not tls:
        return [f"shoal is listening on {host} over plain HTTP: tokens and records cross the network in clear "
                f"text. Serve HTTPS (--ssl-certfile/--ssl-keyfile) or put a TLS-terminating proxy in front."]
    return []


def print_banner(lines: list[str]) -> None:
    """A warning that cannot be missed in a terminal or a service log."""
    for text in lines:
        log.warning(text)
        bar = "!" * 78
        print(f"{bar}\n!! WARNING: {text}\n{bar}", file=sys.stderr, flush=True)
