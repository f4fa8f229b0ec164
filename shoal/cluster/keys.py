"""A keyed cluster's calls by key: each key's records live on the shard of
its virtual shard (routing.py), so a key's read or delete goes to that
shard alone. Cluster (front.py) takes these methods from here; they use
its calls on shards (_call, _get), its router and its pause.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InvalidArgument
from ..results import Record
from . import addresses


class ClusterKeys:
    def _key_shard(self, key: Any) -> int:
        if self.key is None:
            raise InvalidArgument("this cluster has no key (open it with key=...)")
        shard = self._router.shard_of_value(key)
        if shard is None:
            raise InvalidArgument(f"a key is a string or a number, not {key!r}")
        return shard

    def get_key(self, key: Any) -> Record | None:
        with self._pause.shared():
            self._refresh()
            shard = self._key_shard(key)
            got = self._get(shard, self._call(shard, "get_key", key))
        return None if got is None else Record(addresses.encode(shard, got[0]), got[1])

    def delete_key(self, key: Any, *, durable: bool = False) -> bool:
        with self._pause.shared():
            self._refresh()
            shard = self._key_shard(key)
            return self._get(shard, self._call(shard, "delete_key", key, durable, retries=0))

    def delete_keys(self, keys: Iterable[Any], *, durable: bool = False) -> int:
        """Delete each of `keys` (as delete_key) at the shard that holds it,
        the shards at once; returns how many had a live version."""
        self._check_open()
        with self._pause.shared():
            self._refresh()
            by_shard: dict[int, list] = {}
            for key in keys:
                by_shard.setdefault(self._key_shard(key), []).append(key)
            refs = {s: self._call(s, "delete_keys", ks, durable, retries=0) for s, ks in by_shard.items()}
            return sum(self._get(s, ref) for s, ref in refs.items())

