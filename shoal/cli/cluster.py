"""`shoal cluster serve` and `shoal cluster status`: thin commands over
shoal.cluster (which needs Ray: pip install 'shoal[cluster]')."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..errors import InvalidArgument


def _address(args: argparse.Namespace) -> str | None:
    return args.address or os.environ.get("RAY_ADDRESS") or None


def cmd_cluster_serve(args: argparse.Namespace) -> int:
    try:
        from ..api.server import run_from_args
    except ImportError as exc:
        raise InvalidArgument(f"the HTTP server is not available: {exc}") from None

    def opener(data_dir: Any, settings: dict) -> Any:
        from ..cluster import open as open_cluster
        settings = dict(settings)
        key = settings.pop("key", None)
        return open_cluster(data_dir, args.shards, virtual_shards=args.virtual_shards, key=key,
                            route_by=args.route_by, address=_address(args), shard_cpus=args.shard_cpus, **settings)

    return run_from_args(args, args.serve_parser, opener=opener, prog="shoal cluster serve")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from ..cluster import open as open_cluster
    c = open_cluster(args.data, attach=True, address=_address(args) or "auto")
    try:
        st = c.status()
    finally:
        c.close(keep_shards=True)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0 if all(s["healthy"] for s in st["shards"]) else 1
    print(f"cluster {args.data}: {len(st['shards'])} shards, {st['virtual_shards']} virtual, "
          f"{st['records']:,} records, {_mb(st['disk_bytes'])} on disk"
          + (f", keyed by {st['key']}" if st["key"] else "")
          + (f", routed by {st['route_by']}" if st["route_by"] else "")
          + (" (a move of keys or a removal of shards is unfinished: rebalance() finishes it)"
             if st["moving"] else ""))
    print(f"{'shard':>5}  {'health':<8} {'records':>12}  {'disk':>10}  {'vshards':>7}  {'pid':>7}  node")
    for s in st["shards"]:
        print(f"{s['shard']:>5}  {'ok' if s['healthy'] else 'DOWN':<8} {s.get('records', 0):>12,}  "
              f"{_mb(s.get('disk_bytes', 0)):>10}  {s['virtual_shards']:>7}  {s.get('pid', ''):>7}  "
              f"{(s.get('node') or '')[:16]}")
    return 0 if all(s["healthy"] for s in st["shards"]) else 1
