"""A cluster's PSFs: registered on every shard, and kept in the shard map
(cluster.json) in the order they were made, so a front replays them to
every shard it opens and a shard that missed one (down, or added later)
catches up. Cluster (front.py) takes these methods from here.

Must stay true:
  - Definitions are JMESPath text: a callable cannot be sent to a shard,
    nor replayed to one that restarts.
  - A registration is written to the map (under the map lock) before it is
    made on the shards: a front that dies between the two leaves it for
    the next front to replay, never a shard with a PSF the map lacks.
"""
from __future__ import annotations

from ..errors import InvalidArgument, PSFExists, PSFNotFound


class ClusterPSFs:
    def register_psf(self, name: str, definition: str, *, exist_ok: bool = False, replace: bool = False,
                     bucket: float | None = None, time: bool = False):
        """Register a PSF on every shard (JMESPath text: a callable cannot
        be replayed to a shard that restarts). As Store.register_psf."""
        if not isinstance(definition, str):
            raise InvalidArgument("a cluster's PSFs are JMESPath text (a callable cannot be sent to its shards)")
        self._check_open()
        with self._changing_map():
            current = self._active().get(name)
            if current is not None:
                same = (current["definition"] == definition and current.get("bucket") == bucket
                        and bool(current.get("time")) == bool(time))
                if same and exist_ok:
                    return self.psf(name)
                if not replace:
                    raise PSFExists(f"PSF {name!r} is already active, defined as {current['definition']!r}; to "
                                    f"change it, deregister it first (or register with replace)",
                                    name=name, definition=current["definition"])
            reg = {"op": "register", "name": name, "definition": definition, "bucket": bucket, "time": bool(time)}
            self.map.psfs.append(reg)
            self._save_map()
        return self._all("register_psf", reg)[0]

    def deregister_psf(self, name: str):
        self._check_open()
        with self._changing_map():
            if name not in self._active():
                raise PSFNotFound(f"no active PSF named {name!r}")
            reg = {"op": "deregister", "name": name}
            self.map.psfs.append(reg)
            self._save_map()
        return self._all("deregister_psf", reg)[0]

    def _active(self) -> dict[str, dict]:
        active: dict[str, dict] = {}
        for reg in self.map.psfs:
            if reg["op"] == "register":
                active[reg["name"]] = reg
            else:
                active.pop(reg["name"], None)
        return active

    def psf(self, name: str):
        for p in self.psfs():
            if p.name == name and p.active:
                return p
        raise PSFNotFound(f"no active PSF named {name!r}")

    def psfs(self, *, include_inactive: bool = True) -> list:
        """The PSFs of shard 0 (every shard has the same ones; their ranges
        are each shard's own)."""
        self._check_open()
        with self._pause.shared():
            return self._get(0, self._call(0, "psfs", include_inactive))
