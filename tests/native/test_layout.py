"""The record layout is defined once in C (shoal.h's structs and constants,
record.h's SHOAL_FIELD lines, which the compiler checks) and known once in
Python (shoal/store/record.py, shoal/store/address.py). These tests read the
headers' text and check that the two agree: every field's offset and width,
the constants, the address mask and the psf_id's place above the address in
a key pointer's prev_psf; that record.py decodes a record laid out from
record.h's numbers alone; and that a record the C encoder wrote decodes
there to what was ingested, its size and CRC as record.h says."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import orjson

import shoal
from shoal import _native
from shoal._native import ffi, lib
from shoal.store import address, record

HERE = Path(_native.__file__).parent
SHOAL_H = (HERE / "shoal.h").read_text()
RECORD_H = (HERE / "record.h").read_text()

DEFINES = {name: int(value) for name, value in re.findall(r"#define (SHOAL_\w+) (-?\d+)\b", SHOAL_H)}
FIELDS: dict[str, list[tuple[str, int, int]]] = {}
for _type, _field, _off, _n in re.findall(r"^SHOAL_FIELD\((\w+), (\w+), (\d+), (\d+)\);", RECORD_H, re.M):
    FIELDS.setdefault(_type, []).append((_field, int(_off), int(_n)))

STRUCTS = {"shoal_record_header": record._HEADER, "shoal_key_pointer": record._KP}


def struct_fields(fmt: struct.Struct) -> list[tuple[int, int]]:
    """(offset, width) of each field of a little-endian struct format."""
    codes = fmt.format.lstrip("<")
    return [(struct.calcsize("<" + codes[:i]), struct.calcsize("<" + c)) for i, c in enumerate(codes)]


def test_record_h_lists_every_field_of_both_structs():
    assert set(FIELDS) == set(STRUCTS)
    for name, fields in FIELDS.items():
        compiled = ffi.typeof(name).fields
        assert [f for f, _, _ in fields] == [f for f, _ in compiled], name
        for (field, off, n), (_, cf) in zip(fields, compiled):
            assert (cf.offset, ffi.sizeof(cf.type)) == (off, n), f"{name}.{field}"


def test_record_py_struct_formats_match_record_h():
    for name, fmt in STRUCTS.items():
        assert struct_fields(fmt) == [(off, n) for _, off, n in FIELDS[name]], name
        assert fmt.size == ffi.sizeof(name)


def test_constants_match():
    assert record.HEADER_BYTES == DEFINES["SHOAL_HEADER_BYTES"] == ffi.sizeof("shoal_record_header")
    assert record.KP_BYTES == DEFINES["SHOAL_KP_BYTES"] == ffi.sizeof("shoal_key_pointer")
    assert record._MAGIC == DEFINES["SHOAL_RECORD_MAGIC"]
    assert record._TOMBSTONE == DEFINES["SHOAL_RF_TOMBSTONE"]
    assert address.ADDRESS_BITS == DEFINES["SHOAL_ADDRESS_BITS"]
    assert address.FIRST_ADDRESS == DEFINES["SHOAL_FIRST_ADDRESS"]
    assert record._ADDR_MASK == address.MAX_ADDRESS == (1 << DEFINES["SHOAL_ADDRESS_BITS"]) - 1
    assert "#define SHOAL_ADDR_MASK ((1ULL << SHOAL_ADDRESS_BITS) - 1)" in RECORD_H
    assert "#define SHOAL_PSF_SHIFT SHOAL_ADDRESS_BITS" in RECORD_H
    assert DEFINES["SHOAL_KEY_PSF_ID"] < 1 << (64 - DEFINES["SHOAL_ADDRESS_BITS"])


def _laid_out(kps: list[tuple[int, int, bytes, int]], values: bytes, payload: bytes, flags: int = 0) -> bytes:
    """A record built from record.h's numbers alone (not record.py's
    formats): kps are (psf_id, prev, value, kind), CANON values are in
    `values` at their offset there, SPAN values in the payload."""
    hdr, kpf = dict((f, (o, n)) for f, o, n in FIELDS["shoal_record_header"]), \
        dict((f, (o, n)) for f, o, n in FIELDS["shoal_key_pointer"])
    pad8 = lambda n: (n + 7) & ~7  # noqa: E731
    values_off = DEFINES["SHOAL_HEADER_BYTES"] + len(kps) * DEFINES["SHOAL_KP_BYTES"]
    payload_off = values_off + pad8(len(values))
    size = payload_off + pad8(len(payload))
    rec = bytearray(size)

    def put(table, base, field, value):
        off, n = table[field]
        rec[base + off:base + off + n] = value.to_bytes(n, "little")

    for field, value in [("magic", DEFINES["SHOAL_RECORD_MAGIC"]), ("version", DEFINES["SHOAL_RECORD_VERSION"]),
                         ("flags", flags), ("size", size), ("payload_bytes", len(payload)), ("n_kps", len(kps)),
                         ("values_bytes", len(values)), ("aux", 12345)]:
        put(hdr, 0, field, value)
    for k, (psf_id, prev, value, kind) in enumerate(kps):
        base = DEFINES["SHOAL_HEADER_BYTES"] + k * DEFINES["SHOAL_KP_BYTES"]
        where = payload_off + payload.index(value) if kind == DEFINES["SHOAL_KP_SPAN"] else values_off + values.index(value)
        put(kpf, base, "prev_psf", psf_id << DEFINES["SHOAL_ADDRESS_BITS"] | prev)
        put(kpf, base, "value_off", where)
        put(kpf, base, "value_len", len(value))
        put(kpf, base, "kp_index", k)
        put(kpf, base, "value_kind", kind)
    rec[values_off:values_off + len(values)] = values
    rec[payload_off:payload_off + len(payload)] = payload
    put(hdr, 0, "crc", lib.shoal_crc32c(0, bytes(rec[4:payload_off + len(payload)]), payload_off + len(payload) - 4))
    return bytes(rec)


def test_record_py_decodes_a_record_laid_out_by_record_h():
    payload = b'{"name":"ab","n":7}'
    max_address = (1 << DEFINES["SHOAL_ADDRESS_BITS"]) - 1
    kps = [(3, 0, b"ab", DEFINES["SHOAL_KP_SPAN"]),
           (DEFINES["SHOAL_KEY_PSF_ID"], max_address - 7, b"n7e0", DEFINES["SHOAL_KP_CANON"]),
           (0, 64, b"t", DEFINES["SHOAL_KP_CANON"])]
    rec = _laid_out(kps, b"n7e0t", payload)
    assert record.payload_of(rec) == payload and record.record_size(rec) == len(rec)
    assert record.key_pointers(rec) == [record.KeyPointer(3, 0, b"sab"),
                                        record.KeyPointer(DEFINES["SHOAL_KEY_PSF_ID"], max_address - 7, b"n7e0"),
                                        record.KeyPointer(0, 64, b"t")]
    page = rec + _laid_out([], b"", b"[]", flags=DEFINES["SHOAL_RF_TOMBSTONE"]) + bytes(64)
    assert record.record_addresses(page, 4096, len(page), 4096) == ([4096, 4096 + len(rec)], None)
    assert record.record_addresses(page, 4096, len(page), 4096, tombstones=False) == ([4096], None)


def test_a_record_the_c_encoder_wrote(tmp_path):
    text = b'{"type":"Push","esc":"a\\u00e9","n":1.50,"flag":true,"s":"plain"}'
    with shoal.open(tmp_path, page_size_bytes=4096, memory_budget_bytes=4 * 4096, segment_size_bytes=8192) as st:
        ids = {name: st.register_psf(name, expr).id
               for name, expr in [("type", "type"), ("esc", "esc"), ("n", "n"), ("flag", "flag"), ("none", "missing")]}
        result = st.ingest(text + b"\n")
        whole = st._log.read_records([result.first_address])[0]
    h = record._HEADER.unpack_from(whole)
    crc, magic, version, flags, size, payload_bytes, n_kps, _, values_bytes, aux = h
    assert (magic, version, flags, size) == (DEFINES["SHOAL_RECORD_MAGIC"], DEFINES["SHOAL_RECORD_VERSION"], 0, len(whole))
    payload_off = record.HEADER_BYTES + n_kps * record.KP_BYTES + ((values_bytes + 7) & ~7)
    assert size == payload_off + ((payload_bytes + 7) & ~7)
    assert record.payload_of(whole) == text and payload_bytes == len(text)
    covered = whole[4:payload_off + payload_bytes]  # the CRC covers [4, payload end)
    assert crc == lib.shoal_crc32c(0, covered, len(covered))
    assert aux != 0  # tagged
    kps = record.key_pointers(whole)
    # a plain string is a SPAN into the payload; an escaped one, numbers and true are canonical bytes
    assert [(k.psf_id, k.value) for k in kps] == [(ids["type"], b"sPush"), (ids["esc"], "sa\u00e9".encode()),
                                                   (ids["n"], b"n15e-1"), (ids["flag"], b"t")]
    assert all(k.prev_address == 0 for k in kps)  # first on every chain
    assert values_bytes == len("sa\u00e9".encode()) + len(b"n15e-1") + len(b"t")
    assert orjson.loads(record.payload_of(whole)) == orjson.loads(text)
