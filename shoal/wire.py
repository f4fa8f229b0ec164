"""The HTTP API's NDJSON lines with addresses, `{"address":a,"record":<text>}`:
made by the server from a RecordBatch in one native call, split by the
client back into Records without parsing each record (_native/records.c).
"""
from __future__ import annotations

from ._native import _records

address_lines = _records.address_lines  # (data, addresses, offsets, lengths) -> bytes
split_address_lines = _records.split_address_lines  # data -> (addresses, offsets, lengths, used, bad)
