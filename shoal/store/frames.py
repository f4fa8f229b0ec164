"""Compressed frames (_native/frame.c): the unit of the compressed cold tier.

A Codec compresses log bytes into frames of `frame_bytes` raw bytes each
(zstd at `level`, with the store's trained dictionary when it has one) and
decompresses one frame back, checking its header, its address and both
CRC32Cs in C. zstd is the `zstandard` package's: its cffi module exports
the library's entry points, bound into the C core once per process
(`bind`), so building shoal needs no zstd headers.

Dictionaries: `train_dictionary` makes one from samples of a store's own
log (zstandard's trainer); frames of small records compress to about three
quarters of their size without one (benchmarks/space.py).
"""
from __future__ import annotations

import threading
from array import array

from .._native import check, ffi, lib
from ..errors import CorruptionError, StorageError

DICT_FILE = "zstd.dict"  # a store's trained dictionary, in its log directory beside the segment files
# With a dictionary, 8 KiB frames are as small on disk as 16 KiB ones (0.225x
# against 0.221x of generated events), and a record read decompresses half as much.
DEFAULT_FRAME_BYTES = 8 << 10
DEFAULT_LEVEL = 3
DICT_BYTES = 110 << 10
HEADER_BYTES: int = ffi.sizeof("shoal_frame_header")
MAX_FRAME_BYTES: int = lib.SHOAL_FRAME_MAX_RAW
_UNCLEARED = ffi.new_allocator(should_clear_after_alloc=False)

_bound = False
_bind_lock = threading.Lock()
_API = ("createCCtx", "freeCCtx", "compressCCtx", "compress_usingCDict", "createCDict", "freeCDict",
        "createDCtx", "freeDCtx", "decompressDCtx", "decompress_usingDDict", "createDDict", "freeDDict",
        "isError", "compressBound")


class CompressionUnavailable(StorageError):
    """The zstandard package (a dependency) is missing or has no cffi module."""


def bind() -> None:
    """Hand zstd's entry points from the zstandard wheel to the C core (once)."""
    global _bound
    if _bound:
        return
    with _bind_lock:
        if _bound:
            return
        try:
            from zstandard import _cffi as z
        except ImportError as exc:
            raise CompressionUnavailable(
                f"compression needs the zstandard package with its cffi module ({exc}); "
                "install it with: pip install 'zstandard>=0.22'") from None
        api = ffi.new("shoal_zstd_api *")
        for name in _API:
            fn = z.ffi.addressof(z.lib, "ZSTD_" + name)
            setattr(api, name, ffi.cast("void *", int(z.ffi.cast("uintptr_t", fn))))
        check(lib.shoal_zstd_bind(api), "binding zstd")
        _bound = True


def train_dictionary(log: bytes, size: int = DICT_BYTES) -> bytes:
    """A zstd dictionary of at most `size` bytes trained on 4 KiB pieces of
    `log` (a store's own log bytes, spread over at most 30x `size` of
    them), or b"" when there is too little to train on (fewer than 8x
    `size` bytes, or the trainer finds nothing to keep): frames are then
    compressed without one."""
    import zstandard

    if len(log) < 8 * size:
        return b""
    piece = 4096
    n = min(len(log) // piece, 30 * size // piece)
    step = len(log) // n
    samples = [bytes(log[i * step:i * step + piece]) for i in range(n)]
    try:
        return zstandard.train_dictionary(size, samples).as_bytes()
    except zstandard.ZstdError:
        return b""


class Codec:
    """Compression level, frame size and dictionary of one store. Compress
    from one thread at a time per call (each call has its own context);
    decompress from any thread."""

    def __init__(self, *, level: int = DEFAULT_LEVEL, frame_bytes: int = DEFAULT_FRAME_BYTES,
                 dictionary: bytes = b""):
        if not 0 < frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"frame_bytes must be in 1..{MAX_FRAME_BYTES:,}, not {frame_bytes}")
        if not -7 <= level <= 22:
            raise ValueError(f"level must be in -7..22 (zstd's), not {level}")
        bind()
        self.level = level
        self.frame_bytes = frame_bytes
        self.dictionary = bytes(dictionary)
        ptr = lib.shoal_codec_new(self.dictionary, len(self.dictionary), level)
        if ptr == ffi.NULL:
            raise CompressionUnavailable("zstd could not load the dictionary (not a zstd dictionary?)")
        self.ptr = ffi.gc(ptr, lib.shoal_codec_free)

    def compress(self, address: int, raw) -> tuple[bytes, array]:
        """Frames of log bytes [address, address + len(raw)), back to back,
        and where each starts in them."""
        n = len(raw)
        if n == 0:
            return b"", array("Q")
        k = (n + self.frame_bytes - 1) // self.frame_bytes
        cap = k * lib.shoal_frame_bound(self.frame_bytes)
        out = ffi.new("char[]", cap)
        offsets = ffi.new("uint64_t[]", k)
        n_frames = ffi.new("uint32_t *")
        src = ffi.from_buffer(raw)
        used = check(lib.shoal_frames_compress(self.ptr, address, src, n, self.frame_bytes, out, cap,
                                               offsets, k, n_frames), "compressing frames")
        return ffi.buffer(out, used)[:], array("Q", ffi.unpack(offsets, n_frames[0]))

    def decompress(self, frame, address: int) -> bytes:
        """The raw bytes of the frame at the start of `frame` (bytes-like),
        which must hold log address `address` first; CorruptionError if its
        header, address or either checksum does not check."""
        src = ffi.from_buffer(frame)
        cap = _raw_len(frame)
        dst = _UNCLEARED("char[]", max(1, cap))  # what C reports as written is all that is read
        n = lib.shoal_frame_decompress(self.ptr, src, len(frame), address, dst, cap)
        if n == lib.SHOAL_E_CORRUPT:
            raise CorruptionError(f"frame at address {address} is corrupt: its header, its address or a "
                                  "checksum does not check")
        if n == lib.SHOAL_E_ARG and self.dictionary == b"":
            raise CorruptionError(f"frame at address {address} was compressed with a dictionary this codec "
                                  "does not have")
        return ffi.buffer(dst, check(n, f"frame at address {address}"))[:]


def _raw_len(frame) -> int:
    """The raw length a frame's header states (checked when it is decompressed)."""
    if len(frame) < HEADER_BYTES:
        return 0
    return min(int.from_bytes(bytes(frame[16:20]), "little"), MAX_FRAME_BYTES)


def frame_size(frame) -> int:
    """Bytes the frame at the start of `frame` takes (header, compressed
    bytes, padding); CorruptionError if its header does not fit or check."""
    return check(lib.shoal_frame_size(ffi.from_buffer(frame), len(frame)), "frame header")


def store_codec(log_dir, config) -> Codec | None:
    """The codec a store's cold files are read and written with (its
    compression settings; its dictionary, DICT_FILE, when it has one). None
    when the store does not compress and its log holds no cold file."""
    if config.compression == "none" and not any(log_dir.glob("segment-*.z")):
        return None
    try:
        dictionary = (log_dir / DICT_FILE).read_bytes()
    except FileNotFoundError:
        dictionary = b""
    return Codec(level=config.compression_level, frame_bytes=config.compression_frame_bytes, dictionary=dictionary)
