"""cffi API-mode build of shoal's C core: `shoal._native._lib`.

shoal.h is the one ABI: the text between its BEGIN CDEF and END CDEF markers
goes to cdef, and every C file includes the whole header.
"""
from __future__ import annotations

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
# The JSON layer, PSF programs and the index, then the hybrid log: one file
# per operation (hlog.h lists them), the record layout in record.h.
SOURCES = ["json.c", "canon.c", "crc.c", "framing.c", "eval.c", "index.c", "tally.c", "tally_list.c", "tally_page.c", "tally_dump.c",
           "ingest.c", "read.c", "chain.c", "walk_all.c", "fetch.c", "scan.c", "segmap.c", "gate.c", "breaks.c", "project.c",
           "bucket.c", "frame.c"]
# The headers they include. Some hold inline code (record.h, hlog.h): a
# change to one alone must rebuild, and build_ext looks only at sources and
# depends. (wire.h belongs to _records: setup.py.)
HEADERS = ["shoal.h", "internal.h", "record.h", "hlog.h", "tally.h"]


def _cdef_text() -> str:
    text = (HERE / "shoal.h").read_text()
    start = text.index("/* BEGIN CDEF */")
    end = text.index("/* END CDEF */")
    return text[start:end]


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
_extra = os.environ.get("SHOAL_CFLAGS", "").split()
ffibuilder.set_source(
    "shoal._native._lib",
    '#include "shoal.h"\n',
    sources=[str(pathlib.Path("shoal/_native") / s) for s in SOURCES],
    depends=[str(pathlib.Path("shoal/_native") / h) for h in HEADERS],
    include_dirs=[str(pathlib.Path("shoal/_native"))],
    extra_compile_args=["-O2", "-std=gnu11", "-fno-strict-aliasing", "-Wall", "-Wno-unused-function", *_extra],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
