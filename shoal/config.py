"""Typed configuration. Sizes are bytes and carry the unit in their names."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .errors import InvalidArgument, RecordTooLarge
from . import sizes
from .sizes import GiB, KiB, MiB

# psf_ids there are: a key pointer holds 16 bits of psf_id, and 65535 is a
# keyed store's key (SHOAL_MAX_KPS, SHOAL_KEY_PSF_ID in _native/shoal.h).
PSF_IDS = 65535


# Threads one ingest call may prepare its batches on (Store.ingest threads=).
MAX_INGEST_THREADS = 64


def default_ingest_threads() -> int:
    """One per core this process may run on (the CLI's and server's default
    for one ingest call), at most 8: past that one writer's commits bound
    the rate (README, Ingest on every core)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class StoreConfig:
    """How a store lays out its log and how much memory it may use.

    page_size_bytes: log page size, a power of two from 4 KiB to 1 GiB. A
        record (header, key pointers, values, payload) must fit in one page.
    memory_budget_bytes: memory for in-memory log pages; at least two pages.
        The hash index and per-batch buffers come on top (see Store.stats()).
    segment_size_bytes: size of each segment file on disk, a power-of-two
        multiple of the page size.
    index_bucket_bits: initial hash table size (2**bits cache-line buckets);
        the table doubles as it fills.
    max_record_bytes: largest accepted record text; None means "whatever fits
        in a page".
    batch_bytes: how much input one native ingest call takes.
    max_reported_errors: rejected records listed in an IngestResult (all are
        counted).
    key: a JMESPath expression giving each record's key (a string or a
        number) for a keyed store: a newer record with the same key
        supersedes the older one, and keys can be read and deleted. None: an
        unkeyed store (every record stays live). Fixed when a store is created.
    retain_bytes: retention by size: keep (about) the newest N bytes of log;
        a background compaction drops older pages. None: no size limit.
    retain_seconds: retention by age: drop pages whose every record has a
        timestamp (timestamp_expression) older than this many seconds.
    timestamp_expression: JMESPath giving a record's time, as epoch seconds
        or milliseconds (a number) or an ISO-8601 string; a record whose
        timestamp cannot be read counts as new. Needed by retain_seconds.
    compaction_interval_seconds: how often the background thread checks the
        retention policy (it runs only when retain_bytes or retain_seconds
        is set).
    verify_log_on_open: on open, read the whole log back and check every
        record's CRC32C, so damage anywhere is found (and dropped, and
        reported) then, not when a query meets it. Costs one read of the
        whole log at open. Cold (compressed) segments are checked frame by
        frame, header and compressed bytes, without decompressing them:
        their records were checked before they were compressed, and a read
        checks the raw bytes it decompresses. False: only the log after the
        checkpoint is verified, and that the segment files below it are
        all there.
    map_segments: map segment files read-only, so queries reading the
        on-disk part of the log copy from the OS page cache instead of
        making a system call per block. Pages read that way count in the
        process's RSS while resident (shared file pages: the kernel evicts
        them like any cached file data). False: pread only.
    cache_written_pages: the flusher writes pages to segment files with
        O_DIRECT (no copy into the page cache, which would cost more CPU
        than parsing); with this, it asks the kernel to read each write
        back into the page cache in the background, so the first query
        over pages that just left memory finds them cached instead of
        waiting on the device (GitHub events, 418 MB ingested with the
        default budget: the first PushEvent query 0.10 s instead of 0.37 s,
        0.07 s repeated). Costs the device one read per write (5-10% of
        ingest that spills, here). False: the page cache fills only as
        queries read.
    max_expression_chars, max_expression_depth, max_eval_steps,
    max_eval_bytes: the cost bounds of every JMESPath expression the store
        compiles and evaluates (PSFs, scans, the key and timestamp
        expressions); see ExpressionLimits.
    max_active_psfs: PSFs registered and active at once; registering one
        more raises TooManyPSFs (HTTP 409). Every active PSF is evaluated
        on every record ingested.
    max_inactive_psfs: deregistered PSFs the registry keeps (their names
        still answer queries, by scanning where they were not active), and
        PSFs whose name a new definition took. Beyond it the one
        deregistered longest ago is forgotten: its name is free, and its
        psf_id may serve a later PSF (see psf/registry.py for why that is
        safe). The two together stay below the 65,535 psf_ids there are.
    tally_max_values, tally_max_value_bytes: the value tally (Store.count,
        Store.group_count) keeps each PSF's distinct values up to this many
        (about 48 bytes each plus the value) of at most this many bytes.
        Past either bound the PSF's tally overflows: values it holds keep
        exact O(1) counts, other values are counted by walking their chain,
        and group_count reads the log (still exact, at scan speed).
    time_field: a JMESPath giving each record's time (epoch seconds or
        milliseconds, or an ISO-8601 string): every query, count, group
        count and scan then takes since= / until=. The store keeps it as a
        bucketed time PSF named "@time", one bucket per
        time_bucket_seconds; records ingested before it was set are
        scanned for windows.
    compression: "zstd" keeps the written log compressed: a background
        thread compresses each page the flusher has written whole into its
        segment's cold file, as frames of compression_frame_bytes raw bytes
        (zstd at compression_level, with a dictionary trained on the
        store's log), and frees the page in the raw segment file (a hole;
        the raw file goes once its segment is all cold). Reads of cold pages
        decompress the frames they touch and keep them in a cache shared by
        every reader, of compression_cache_bytes (per open, filled as
        frames are read; 0: none): what the page cache is to a raw store.
        A long answer whose frames fit in half of it is read ahead on every
        core. "none" (the default): raw segment files only. Fixed when a
        store is created.
    Retention, verification, mapping, caching, expression and PSF limits apply per
    open, like the memory budget.
    """

    page_size_bytes: int = 4 * MiB
    memory_budget_bytes: int = 256 * MiB
    segment_size_bytes: int = 256 * MiB
    index_bucket_bits: int = 14
    max_record_bytes: int | None = None
    batch_bytes: int = 1 * MiB
    max_reported_errors: int = 1000
    key: str | None = None
    retain_bytes: int | None = None
    retain_seconds: float | None = None
    timestamp_expression: str | None = None
    compaction_interval_seconds: float = 5.0
    verify_log_on_open: bool = True
    map_segments: bool = True
    cache_written_pages: bool = True
    max_expression_chars: int = 4096
    max_expression_depth: int = 64
    max_eval_steps: int = 100_000
    max_eval_bytes: int = 1 * MiB
    max_active_psfs: int = 1024
    max_inactive_psfs: int = 1024
    tally_max_values: int = 100_000
    tally_max_value_bytes: int = 256
    time_field: str | None = None
    time_bucket_seconds: float = 300.0
    compression: str = "none"
    compression_level: int = 3
    compression_frame_bytes: int = 8 * KiB
    compression_cache_bytes: int = 256 * MiB

    def __post_init__(self) -> None:
        if not _is_pow2(self.page_size_bytes) or not 4 * KiB <= self.page_size_bytes <= GiB:
            raise InvalidArgument("page_size_bytes must be a power of two between 4 KiB and 1 GiB")
        if self.memory_budget_bytes < 2 * self.page_size_bytes:
            raise InvalidArgument("memory_budget_bytes must hold at least two pages")
        if (not _is_pow2(self.segment_size_bytes) or self.segment_size_bytes < self.page_size_bytes):
            raise InvalidArgument("segment_size_bytes must be a power of two and at least one page")
        if not 4 <= self.index_bucket_bits <= 30:
            raise InvalidArgument("index_bucket_bits must be between 4 and 30")
        if self.max_record_bytes is not None and self.max_record_bytes <= 0:
            raise InvalidArgument("max_record_bytes must be positive")
        if self.batch_bytes < 4 * KiB:
            raise InvalidArgument("batch_bytes must be at least 4 KiB")
        if self.max_reported_errors < 0:
            raise InvalidArgument("max_reported_errors must be >= 0")
        if self.key is not None and (not isinstance(self.key, str) or not self.key.strip()):
            raise InvalidArgument("key must be a non-empty JMESPath expression")
        self._check_retention()
        self.expression_limits  # checks the four bounds
        self._check_psf_limits()
        if not 0 <= self.tally_max_values <= 1 << 30:
            raise InvalidArgument("tally_max_values must be between 0 and 2**30")
        if not 0 <= self.tally_max_value_bytes <= 1 << 20:
            raise InvalidArgument("tally_max_value_bytes must be between 0 and 1 MiB")
        if self.compression not in ("none", "zstd"):
            raise InvalidArgument(f"compression must be 'none' or 'zstd', not {self.compression!r}")
        if isinstance(self.compression_level, bool) or not isinstance(self.compression_level, int) \
                or not 1 <= self.compression_level <= 19:
            raise InvalidArgument("compression_level must be an integer from 1 (fastest) to 19 (smallest)")
        if not _is_pow2(self.compression_frame_bytes) or not 4 * KiB <= self.compression_frame_bytes <= 32 * KiB:
            raise InvalidArgument("compression_frame_bytes must be a power of two from 4 KiB to 32 KiB")
        if isinstance(self.compression_cache_bytes, bool) or not isinstance(self.compression_cache_bytes, int) \
                or self.compression_cache_bytes < 0:
            raise InvalidArgument("compression_cache_bytes must be a number of bytes >= 0 (0: no cache)")
        if self.time_field is not None and (not isinstance(self.time_field, str) or not self.time_field.strip()):
            raise InvalidArgument("time_field must be a non-empty JMESPath expression")
        if (isinstance(self.time_bucket_seconds, bool) or not isinstance(self.time_bucket_seconds, (int, float))
                or not 0 < self.time_bucket_seconds < 1e12):
            raise InvalidArgument("time_bucket_seconds must be a positive number of seconds")

    def _check_psf_limits(self) -> None:
        def count(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)
        if not count(self.max_active_psfs) or self.max_active_psfs < 1:
            raise InvalidArgument("max_active_psfs must be a positive int")
        if not count(self.max_inactive_psfs) or self.max_inactive_psfs < 0:
            raise InvalidArgument("max_inactive_psfs must be an int >= 0")
        # Every PSF the registry holds has its own psf_id: at a registration
        # all it may hold plus the new one must find ids.
        if self.max_active_psfs + self.max_inactive_psfs >= PSF_IDS:
            raise InvalidArgument(f"max_active_psfs + max_inactive_psfs must be below {PSF_IDS} (psf_ids)")

    @property
    def expression_limits(self) -> "ExpressionLimits":
        return ExpressionLimits(self.max_expression_chars, self.max_expression_depth,
                                self.max_eval_steps, self.max_eval_bytes)

    def _check_retention(self) -> None:
        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        rb = self.retain_bytes
        if rb is not None and (not isinstance(rb, int) or isinstance(rb, bool) or rb <= 0):
            raise InvalidArgument("retain_bytes must be a positive int (or None)")
        rs = self.retain_seconds
        if rs is not None and (not number(rs) or rs <= 0 or rs == float("inf")):
            raise InvalidArgument("retain_seconds must be a positive number of seconds (or None)")
        te = self.timestamp_expression
        if te is not None and (not isinstance(te, str) or not te.strip()):
            raise InvalidArgument("timestamp_expression must be a non-empty JMESPath expression")
        if rs is not None and te is None:
            raise InvalidArgument("retain_seconds needs a timestamp_expression")
        ci = self.compaction_interval_seconds
        if not number(ci) or not 0 < ci <= 86400:
            raise InvalidArgument("compaction_interval_seconds must be between 0 and 86400")

    @property
    def page_bits(self) -> int:
        return self.page_size_bytes.bit_length() - 1

    @property
    def n_frames(self) -> int:
        return self.memory_budget_bytes // self.page_size_bytes

    @property
    def effective_max_record_bytes(self) -> int:
        cap = self.page_size_bytes - 32  # one record header; key pointers are checked per record
        return cap if self.max_record_bytes is None else min(cap, self.max_record_bytes)

    def record_too_large(self, size_bytes: int | None = None) -> "RecordTooLarge":
        """The error for a record over this store's limit (its reason and
        message say the size, the limit, and how to raise it)."""
        limit = self.effective_max_record_bytes
        return RecordTooLarge(size_bytes=size_bytes, max_record_bytes=limit, page_size_bytes=self.page_size_bytes,
                              lowered=limit < self.page_size_bytes - 32)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StoreConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes) -> "StoreConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ExpressionLimits:
    """What one JMESPath expression may cost, so that no expression (a PSF, a
    scan, a key) can take the process's memory or a core for good. Each
    bound has its own error (shoal.errors) whose message names it.

    Compile time, checked before anything is built (ExpressionTooLong,
    ExpressionTooDeep, both PSFDefinitionErrors):
    max_expression_chars: longest expression text. Compiling is linear in
        it (a 16,000-segment path once cost 1 GB).
    max_expression_depth: deepest nesting: brackets, parentheses and braces
        in the text, and operators nested in the parsed expression (each
        `!`, function call, projection, pipe stage and `&&`/`||` operand
        is a level). The parser and evaluator recurse once per level.

    Per record, in the Python evaluator (EvaluationBudgetExceeded; the C
    evaluator's subset is linear in the record and needs no budget):
    max_eval_steps: expression nodes visited, counting each element a
        projection or function visits (~1 microsecond each).
    max_eval_bytes: JSON size of the values the expression builds
        (multi-selects, projections, flattens, slices, function results),
        each built value counted whole, including what it holds of the
        record; values read straight from the record cost nothing.
        `[@,@]` doubles the size of what it holds: 20 such stages build
        megabytes out of one number.
    """

    max_expression_chars: int = 4096
    max_expression_depth: int = 64
    max_eval_steps: int = 100_000
    max_eval_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        for name in ("max_expression_chars", "max_expression_depth", "max_eval_steps", "max_eval_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgument(f"{name} must be a positive int, not {v!r}")


def parse_size(text: str | int) -> int:
    """'1GiB', '512MiB', '64k', '4096' -> bytes (InvalidArgument when it is
    not a size)."""
    try:
        return sizes.parse_size(text)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
