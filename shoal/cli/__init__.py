"""The `shoal` command: thin commands over one store, opened from a data
directory (`--data`) or reached through a running server (`--url`).

Where the store is: `--url URL` or `--data DIR` when given, else $SHOAL_URL,
else $SHOAL_DATA, else ./shoal-data. Only one process may open a data
directory, so while a server holds it, commands must go through `--url`.

Exit codes: 0 success; 1 an error (message on stderr as `shoal: error: ...`),
`get` of an address holding no record, or an ingest that stored nothing
(every record bad, no records at all, or `--on-error reject` refused a
file); 2 bad usage; 3 an ingest that stored records but skipped bad ones.

`query` and `scan` write records to stdout as the bytes stored, one per line
(NDJSON), in batches; line breaks inside a pretty-printed record become
spaces, as the HTTP API does (JSON reads both as whitespace). `get` writes the
exact bytes. A closed pipe (`shoal query ... | head`) ends a command quietly.
"""
from __future__ import annotations

from .main import main

__all__ = ["main"]
