"""The `shoal` command line: its arguments (build_parser) and main(), which
parses them, runs one command (cli/commands.py) and turns errors into exit
statuses."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
from typing import Any

from ..api.settings import size_arg  # no web stack: flags and config only
from ..errors import ShoalError
from . import cluster as cluster_cmds
from . import commands as C
from .commands import EXIT_PARTIAL, SAMPLE_KINDS
from .output import err


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (status 2)
        return exc.code if isinstance(exc.code, int) else 1
    try:
        return args.run(args) or 0
    except ShoalError as exc:
        err(f"shoal: error: {exc}")
        for note in getattr(exc, "__notes__", ()):
            err(f"shoal: {note}")
        return 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        err("")
        return 130


def _nonneg_int(text: str) -> int:
    try:
        n = int(text, 0)  # 0x... for addresses
    except ValueError:
        try:
            n = int(text)  # 010
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return n


_WHERE_HELP = "where the store is: --url, --data, $SHOAL_URL, $SHOAL_DATA, else ./shoal-data"


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", metavar="ADDR",
                   help="the Ray cluster to join (ray://host:10001, auto, or $RAY_ADDRESS; default: start a local one)")


def build_parser() -> argparse.ArgumentParser:
    # --url/--data may come before or after the command; SUPPRESS keeps a
    # subcommand's unset flag from clobbering one given before it.
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_argument_group("store location")
    group.add_argument("--url", default=argparse.SUPPRESS, help="a running server, e.g. http://127.0.0.1:8765")
    group.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS,
                       help="a data directory no server holds (default ./shoal-data)")
    group.add_argument("--token", metavar="TOKEN", default=argparse.SUPPRESS,
                       help="with --url: the server's read or write token (default $SHOAL_TOKEN)")
    p = argparse.ArgumentParser(
        prog="shoal", parents=[where],
        description="Store raw JSON streams and query them by PSFs (JMESPath expressions).",
        epilog=_WHERE_HELP + ". Run `shoal COMMAND --help` for a command's options.")
    from .._version import __version__
    p.add_argument("--version", action="version", version=f"shoal {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Any, help: str, located: bool = True, **kw: Any) -> argparse.ArgumentParser:
        c = sub.add_parser(name, parents=[where] if located else [], help=help, description=help, **kw)
        c.set_defaults(run=run)
        return c

    c = command("serve", C.cmd_serve, "run the HTTP server on a data directory", located=False,
                epilog="Settings come from flags, then the environment ($SHOAL_DATA, $SHOAL_TOKEN, "
                       "$SHOAL_READ_TOKEN), then a TOML file (--config or $SHOAL_CONFIG) whose keys are these "
                       "flags' names without the dashes.")
    from ..api.settings import add_serve_flags  # imports without the web stack
    add_serve_flags(c)
    c.set_defaults(serve_parser=c)

    c = command("cluster", None, "a cluster of shards on Ray: one store's API over many processes and machines "
                "(pip install 'shoal[cluster]')", located=False)
    csub = c.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    cs = csub.add_parser("serve", help="serve a cluster's HTTP API (the same API as shoal serve)",
                         description="Open (or create, with --shards) the cluster whose map is in --data and "
                                     "serve the HTTP API of shoal serve over it. Each shard is a Ray actor owning "
                                     "a store in DIR/shard-N (its --memory is each shard's). Without --address "
                                     "(or $RAY_ADDRESS) a local Ray starts with the server and stops with it.",
                         epilog="Multi-node: `ray start --head` on one machine, `ray start --address HEAD:6379` "
                                "on the others, then `shoal cluster serve --address auto` (README: Cluster).")
    add_serve_flags(cs)
    _cluster_flags(cs)
    cs.add_argument("--shards", type=int, metavar="N",
                    help="shards of a new cluster (default 1); more on an existing one adds shards, fewer on a "
                         "keyed one removes the highest-numbered (their keys move to the others)")
    cs.add_argument("--virtual-shards", type=int, metavar="N", default=64,
                    help="virtual shards of a new cluster (default 64; fixed once created)")
    cs.add_argument("--route-by", metavar="EXPR",
                    help="a new cluster routes each record by this JMESPath value (a keyed one by its --key; "
                         "default: spread by ~1 MiB piece)")
    cs.add_argument("--shard-cpus", type=float, default=1.0, metavar="N", help="CPUs Ray reserves per shard "
                                                                               "(default 1)")
    cs.set_defaults(run=cluster_cmds.cmd_cluster_serve, serve_parser=cs)
    cst = csub.add_parser("status", help="a cluster's shards: health, node, records",
                          description="Every shard's health, node and records (the cluster's shards must be "
                                      "running: a shoal cluster serve on the same --data and Ray).")
    cst.add_argument("--data", metavar="DIR", required=True, help="the cluster's directory")
    _cluster_flags(cst)
    cst.add_argument("--json", action="store_true", help="machine-readable output")
    cst.set_defaults(run=cluster_cmds.cmd_cluster_status)

    c = command("ingest", C.cmd_ingest, "store the records of NDJSON / JSON array files (.gz too; - is stdin)",
                epilog="Each FILE is one ingest call. Exit status 0 when every record was stored; "
                       f"{EXIT_PARTIAL} when some were stored and bad ones skipped (and listed); 1 when "
                       "nothing was stored (every record bad, or no records at all), on an error (records "
                       "before it stay stored, and the message says how many), or when --on-error reject "
                       "refused a file (files before it stay stored, later ones are not read).")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument("--on-error", choices=["skip", "reject"], default="skip",
                   help="skip: store the good records, list the bad (default); reject: store nothing "
                        "from a file with a bad record")
    c.add_argument("--durable", action="store_true", help="return once the records are on disk")
    c.add_argument("--threads", type=int, metavar="N",
                   help="threads that parse and index a file's records, appended in file order (default: "
                        "one per core; a server's store uses its own, shoal serve --ingest-threads)")
    c.add_argument("--key", metavar="EXPR",
                   help="when creating the store: make it keyed by this JMESPath (newer records replace older "
                        "ones with the same key)")
    c.add_argument("--time-field", metavar="EXPR",
                   help="index each record's time (JMESPath: epoch seconds or ms, or ISO-8601), so that queries, "
                        "counts, top and scans take --since/--until (best given when the store is created)")
    c.add_argument("--format", choices=["auto", "ndjson", "array", "json", "document"], default="auto")
    c.add_argument("--compression", choices=["none", "zstd"],
                   help="when creating the store: keep its written log compressed (zstd; README: Compressed "
                        "cold data)")
    c.add_argument("--page-size", type=size_arg, metavar="SIZE",
                   help="when creating the store: its log page size, a power of two from 4KiB to 1GiB (default "
                        "4MiB). A record must fit in one page, and the size is fixed once the store exists (a "
                        "store with another page size is an error)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress line")

    psf = command("psf", None, "add, list and remove PSFs")
    psf_sub = psf.add_subparsers(dest="psf_command", required=True, metavar="ACTION")
    c = psf_sub.add_parser("add", parents=[where], help="register a PSF: NAME and a JMESPath expression")
    c.add_argument("name")
    c.add_argument("expression")
    c.add_argument("--exist-ok", action="store_true",
                   help="NAME already active with this EXPRESSION is not an error (scripts that run twice)")
    c.add_argument("--replace", action="store_true",
                   help="NAME active with another expression: deregister it and register this one, in one step")
    c.add_argument("--bucket", type=float, metavar="W",
                   help="a bucketed PSF: a number x is indexed as the bucket floor(x / W), for --range queries "
                        "and counts")
    c.add_argument("--time", action="store_true",
                   help="with --bucket (seconds): the value is a time (epoch seconds or ms, ISO-8601)")
    c.set_defaults(run=C.cmd_psf_add)
    c = psf_sub.add_parser("ls", parents=[where], help="list PSFs (also inactive ones)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=C.cmd_psf_ls)
    c = psf_sub.add_parser("rm", parents=[where], help="deregister a PSF")
    c.add_argument("name")
    c.set_defaults(run=C.cmd_psf_rm)

    def since_until(c: argparse.ArgumentParser) -> None:
        c.add_argument("--since", metavar="TIME",
                       help="stores with a time field: only records at or after TIME (ISO-8601, or epoch "
                            "seconds or ms)")
        c.add_argument("--until", metavar="TIME", help="stores with a time field: only records before TIME")

    def reads(c: argparse.ArgumentParser) -> None:
        since_until(c)
        c.add_argument("--fields", metavar="F1,F2",
                       help="print each record as an object of just these fields (JMESPath, comma-separated: "
                            "type,repo.name); plain paths keep their nesting")
        out = c.add_mutually_exclusive_group()
        out.add_argument("--csv", action="store_true", help="CSV with a header row, a column per --fields field")
        out.add_argument("--table", action="store_true", help="an aligned text table of the --fields fields")
        c.add_argument("--limit", type=_nonneg_int, help="at most N records")
        c.add_argument("--order", choices=["newest", "oldest"], default="newest")
        c.add_argument("--with-address", action="store_true",
                       help='print {"address": N, "record": <record>} per record')
        c.add_argument("--include-superseded", action="store_true",
                       help="keyed stores: also older versions of keys and deleted ones")

    def window(c: argparse.ArgumentParser) -> None:
        since_until(c)
        c.add_argument("--from-address", type=_nonneg_int, metavar="ADDRESS", help="only records at or after it")
        c.add_argument("--to-address", type=_nonneg_int, metavar="ADDRESS", help="only records before it")
        c.add_argument("--include-superseded", action="store_true",
                       help="keyed stores: also older versions of keys and deleted ones")

    c = command("query", C.cmd_query, "records whose PSF has a value, as NDJSON on stdout")
    c.add_argument("psf", metavar="PSF")
    c.add_argument("value", nargs="?", metavar="VALUE",
                   help="a JSON literal (3, true, \"a b\") or a bare word string; default true")
    c.add_argument("--range", nargs=2, metavar=("LO", "HI"),
                   help="instead of VALUE: records whose bucketed PSF has a value in [LO, HI)")
    reads(c)
    c = command("scan", C.cmd_scan, "records for which a JMESPath expression is truthy (full scan)")
    c.add_argument("expression")
    reads(c)
    c = command("count", C.cmd_count, "how many records have a PSF value (exact; O(1) over the whole log)")
    c.add_argument("psf", metavar="PSF")
    c.add_argument("value", nargs="?", metavar="VALUE",
                   help="a JSON literal (3, true, \"a b\") or a bare word string; default true")
    c.add_argument("--range", nargs=2, metavar=("LO", "HI"),
                   help="instead of VALUE: records whose bucketed PSF has a value in [LO, HI)")
    window(c)
    c = command("top", C.cmd_top, "a PSF's values and how many records have each, largest first")
    c.add_argument("psf", metavar="PSF")
    c.add_argument("--limit", type=_nonneg_int, default=10, help="at most N values (default 10; 0: all)")
    c.add_argument("--json", action="store_true",
                   help='machine-readable output: {"groups": [{"value": v, "count": n}, ...]}')
    window(c)
    c = command("tail", C.cmd_tail, "follow records as they are ingested (NDJSON on stdout; Ctrl-C stops)")
    c.add_argument("psf", nargs="?", metavar="PSF", help="only records with this PSF value (default: every record)")
    c.add_argument("value", nargs="?", metavar="VALUE",
                   help="a JSON literal (3, true, \"a b\") or a bare word string; default true")
    c.add_argument("--since-address", type=_nonneg_int, metavar="ADDRESS",
                   help="start at this address instead of at the tail")
    c.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after SECONDS without a record")
    c.add_argument("--with-address", action="store_true", help='print {"address": N, "record": <record>}')
    c.add_argument("--fields", metavar="F1,F2", help="just these fields of each record (as query --fields)")
    c = command("get", C.cmd_get, "the record at a log address, or a key's live version (--key)")
    c.add_argument("address", type=_nonneg_int, nargs="?")
    c.add_argument("--key", metavar="KEY", help="keyed stores: a JSON literal (42, \"42\") or a bare string")
    c.add_argument("--with-address", action="store_true")
    c = command("delete", C.cmd_delete, "delete a key (keyed stores): its versions stop answering")
    c.add_argument("key", metavar="KEY", help="a JSON literal (42, \"42\") or a bare string")
    c.add_argument("--durable", action="store_true", help="return once the deletion is on disk")
    command("checkpoint", C.cmd_checkpoint, "make the store restartable from now (fast recovery)")
    c = command("compact", C.cmd_compact, "reclaim the log below an address, or keep only its newest bytes",
                epilog="The cut is rounded down to a page start and never passes the tail page; whole segment "
                       "files below it are deleted. Prints what was reclaimed.")
    cut = c.add_mutually_exclusive_group(required=True)
    cut.add_argument("--until", type=_nonneg_int, metavar="ADDRESS", help="reclaim the log below ADDRESS")
    cut.add_argument("--retain", type=size_arg, metavar="SIZE", help="keep the newest SIZE of log (e.g. 1GiB)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = command("stats", C.cmd_stats, "sizes, addresses, index and PSFs")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = command("sample", C.cmd_sample, "write generated sample records (NDJSON) to try shoal on", located=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="kinds:\n" + "\n".join(textwrap.fill(looks, 79, initial_indent=f"  {name:<8}",
                                                             subsequent_indent=" " * 10)
                                                for name, (_, looks) in SAMPLE_KINDS.items())
                       + "\n\nThe records depend only on KIND, -n and --seed: the same file on every machine.")
    c.add_argument("kind", choices=list(SAMPLE_KINDS), metavar="KIND", help=", ".join(SAMPLE_KINDS))
    c.add_argument("-n", type=_nonneg_int, default=10_000, help="how many records (default 10000)")
    c.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    c.add_argument("-o", "--output", metavar="FILE",
                   help="file to write, gzip-compressed when it ends in .gz (default: stdout, or -)")
    return p
