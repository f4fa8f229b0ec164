/*
 * shoal.h -- the one ABI between shoal's Python layer and its C core.
 *
 * build.py feeds the part between BEGIN CDEF and END CDEF to cffi's cdef, so that
 * part may hold only what cffi parses: integer #defines, typedefs, prototypes.
 * The C files include this header; Python reads every constant through `lib`.
 * How C uses the record structs declared here (offsets, checks, the encoder)
 * is record.h's, outside the ABI; hlog.h maps the log's per-operation files.
 *
 * Conventions:
 *   - C never creates Python objects and never allocates memory the caller must
 *     free, except the opaque shoal_index.
 *   - Functions return SHOAL_OK (0), a positive progress state, or a negative
 *     SHOAL_E_* error; shoal/_native/__init__.py maps codes to exceptions.
 *   - Offsets inside a record or a buffer are uint32/uint64 bytes; log addresses
 *     are 48-bit logical addresses held in uint64.
 *   - Fields documented as "atomic" are read and written with __atomic builtins.
 *
 * Why this file is long: it is the one ABI. cffi reads one header, and every
 * struct and call Python uses is declared here beside the contract it keeps;
 * what only C shares is in record.h, hlog.h and internal.h.
 */
#ifndef SHOAL_H
#define SHOAL_H
#include <stdint.h>
#include <stddef.h>

/* BEGIN CDEF */

/* ---- status codes ------------------------------------------------------- */
#define SHOAL_OK 0
#define SHOAL_NEED_PAGE 1   /* ingest: tail page cannot take the next record */
#define SHOAL_OUT_FULL 2    /* an output array is full: call again to resume */
#define SHOAL_END 3         /* scan/replay: reached the end of valid data */

#define SHOAL_E_SYNTAX -1        /* JSON grammar violated */
#define SHOAL_E_UTF8 -2          /* invalid UTF-8 or lone surrogate escape */
#define SHOAL_E_DEPTH -3         /* nesting deeper than SHOAL_MAX_DEPTH */
#define SHOAL_E_NUMBER -4        /* number overflows a double (orjson rejects these) */
#define SHOAL_E_EMPTY -5         /* no JSON value in the text */
#define SHOAL_E_TRAILING -6      /* bytes after the JSON value */
#define SHOAL_E_TOO_LARGE -7     /* record exceeds max_record_bytes or a page */
#define SHOAL_E_SPACE -8         /* caller's buffer too small */
#define SHOAL_E_CORRUPT -9       /* bad checksum, magic or size in a record */
#define SHOAL_E_IO -10           /* pread failed */
#define SHOAL_E_NOMEM -11        /* allocation failed */
#define SHOAL_E_TOO_MANY_KPS -12 /* more key pointers than a record header holds */
#define SHOAL_E_ARG -13          /* invalid argument (programming error) */
#define SHOAL_E_FRAMING -14      /* array framing: unterminated or malformed array */
#define SHOAL_E_CONTROL -15      /* unescaped control character in a string */
#define SHOAL_E_NO_KEY -16       /* keyed store: the record's key is missing or not a scalar */
#define SHOAL_E_CLOSED -17       /* the store's reader gate is closed */
#define SHOAL_TOMBSTONE 4        /* read: a tombstone (deleted key) starts there */

/* ---- JSON values -------------------------------------------------------- */
#define SHOAL_T_MISSING 0   /* path not present: behaves as null */
#define SHOAL_T_NULL 1
#define SHOAL_T_FALSE 2
#define SHOAL_T_TRUE 3
#define SHOAL_T_NUMBER 4
#define SHOAL_T_STRING 5
#define SHOAL_T_ARRAY 6
#define SHOAL_T_OBJECT 7

#define SHOAL_VF_ESCAPED 1  /* string text contains backslash escapes */
#define SHOAL_VF_EMPTY 2    /* "", [] or {} */

#define SHOAL_MAX_DEPTH 1024 /* same limit as orjson, so every stored record loads */

/* A value located inside a parsed buffer. */
typedef struct {
    uint32_t start;     /* offset of the value's first byte (the quote, for strings) */
    uint32_t len;       /* length of the value's text, quotes included */
    uint8_t type;       /* SHOAL_T_* */
    uint8_t flags;      /* SHOAL_VF_* */
    uint16_t reserved;
} shoal_slot;

/* Path trie: which values shoal_parse must locate. Node 0 is the top-level
 * value. An edge is an object key (unescaped UTF-8 bytes in `keys`) or, when
 * key_len == SHOAL_EDGE_INDEX, the array element number key_off. */
#define SHOAL_EDGE_INDEX 4294967295
typedef struct {
    int32_t slot;         /* slot to fill with this node's value, -1 if none */
    uint32_t slot_lo;     /* slots of the subtree rooted here: [slot_lo, slot_hi); */
    uint32_t slot_hi;     /*   reset to MISSING whenever the node is entered (duplicate keys: last wins) */
    uint32_t first_edge;
    uint32_t n_edges;
} shoal_trie_node;

typedef struct {
    uint32_t key_off;
    uint32_t key_len;
    uint32_t child;
} shoal_trie_edge;

typedef struct {
    const shoal_trie_node *nodes;
    uint32_t n_nodes;
    const shoal_trie_edge *edges;
    uint32_t n_edges;
    const char *keys;
    uint32_t n_slots;
} shoal_trie;

/* Validate buf[0, len) as exactly one JSON text (RFC 8259 grammar, strict
 * UTF-8, no lone surrogate escapes, depth <= SHOAL_MAX_DEPTH, numbers within
 * double range; JSON whitespace around the value allowed) and fill
 * slots[0, trie->n_slots) with the values at the trie's paths (MISSING where
 * absent). trie may be NULL: validate only. len must be < 2^32.
 * Returns SHOAL_OK or a SHOAL_E_*; *err_off gets the offending byte offset. */
int shoal_parse(const char *buf, size_t len, const shoal_trie *trie,
                shoal_slot *slots, size_t *err_off);

/* Canonical bytes of a scalar, used for hashing and comparing PSF values with
 * JSON semantics: 's' + UTF-8 after unescaping; 'n' + decimal (see json.c:
 * "n0" for zero, else "n" ["-"] digits "e" exponent, digits without leading or
 * trailing zeros, value = digits * 10^exponent); 't' true; 'f' false; 'z' null.
 * text/len is the value's JSON text (with quotes for strings). Returns the
 * canonical length, or SHOAL_E_SPACE / SHOAL_E_ARG. */
int64_t shoal_canon(const char *text, size_t len, uint8_t type,
                    char *dst, size_t cap);

/* 64-bit hash of (psf_id, canonical value). */
uint64_t shoal_hash(uint32_t psf_id, const char *canon, size_t len);

/* CRC32C (Castagnoli), hardware-accelerated where the CPU allows. Pass 0 to start. */
uint32_t shoal_crc32c(uint32_t crc, const char *buf, size_t len);
/* shoal_crc32c(crc, text, len) in two steps: part (1 when it could, 0 when
 * the join must read the whole text instead), then join (crc.c says why). */
int shoal_crc32c_part(const char *text, size_t len, uint32_t *part);
uint32_t shoal_crc32c_join(uint32_t crc, const char *text, size_t len, uint32_t part);

/* ---- framing ------------------------------------------------------------ */
/* One record candidate found in an input chunk. */
typedef struct {
    uint64_t start;     /* offset of the record's first byte in the chunk */
    uint64_t len;       /* record text length, surrounding JSON whitespace trimmed */
    uint64_t line;      /* 1-based line (NDJSON) or element number (array) in the whole input */
    int32_t status;     /* SHOAL_OK, or a framing error that rejects this record */
    uint32_t reserved;
} shoal_span;

/* NDJSON: emit one span per line that holds non-whitespace. Lines end with
 * '\n'; when final != 0 the last line may lack it. *consumed = bytes up to the
 * end of the last line emitted or skipped; the caller keeps the rest for the
 * next chunk. first_line = line number of the chunk's first line.
 * Returns SHOAL_OK (every complete line handled) or SHOAL_OUT_FULL. */
int shoal_frame_ndjson(const char *buf, size_t len, int final, uint64_t first_line,
                       shoal_span *out, size_t cap, size_t *n_out, size_t *consumed);

/* JSON array of records, framed incrementally across chunks. */
typedef struct {
    uint32_t phase;       /* 0: before '[', 1: want element or ']', 2: want ',' or ']', 3: after ']', 4: failed */
    uint32_t reserved;
    uint64_t elements;    /* elements emitted so far */
    uint64_t line;        /* current 1-based text line, for error messages */
} shoal_array_state;

/* Frames the elements of a top-level JSON array structurally (strings and
 * nesting tracked, grammar not checked: shoal_parse validates each element).
 * A malformed element becomes a span with its error status, and framing goes
 * on at the next top-level ','. Returns SHOAL_OK, SHOAL_OUT_FULL, or
 * SHOAL_E_FRAMING when the input is not an array (err_off set). */
int shoal_frame_array(shoal_array_state *st, const char *buf, size_t len, int final,
                      shoal_span *out, size_t cap, size_t *n_out, size_t *consumed,
                      size_t *err_off);

/* ---- PSF programs ------------------------------------------------------- */
/* A program is a short postfix sequence over a value stack (depth <= 32). */
#define SHOAL_OP_SLOT 1   /* push the value in slots[arg] */
#define SHOAL_OP_LIT 2    /* push literal arg */
#define SHOAL_OP_EQ 3     /* pop r, l; push l == r (JMESPath equality, JSON semantics) */
#define SHOAL_OP_NE 4
#define SHOAL_OP_LT 5     /* ordering: numbers or strings of one kind, else null */
#define SHOAL_OP_LE 6
#define SHOAL_OP_GT 7
#define SHOAL_OP_GE 8
#define SHOAL_OP_NOT 9    /* pop v; push !truthy(v) */
#define SHOAL_OP_AND 10   /* pop r, l; push truthy(l) ? r : l */
#define SHOAL_OP_OR 11    /* pop r, l; push truthy(l) ? l : r */
#define SHOAL_MAX_STACK 32

typedef struct {
    uint32_t op;
    uint32_t arg;
} shoal_insn;

typedef struct {
    uint32_t type;        /* SHOAL_T_* (scalars only) */
    uint32_t canon_off;   /* canonical bytes in shoal_psfset.lit_pool */
    uint32_t canon_len;
    uint32_t reserved;
    double num;           /* numbers: the value as a double, for ordering */
} shoal_lit;

/* What a program's value becomes before it is indexed (bucket.c). */
#define SHOAL_XF_NONE 0
#define SHOAL_XF_BUCKET 1   /* a number: floor(x / bucket) */
#define SHOAL_XF_TIME 2     /* epoch seconds (ms past 1e11) or ISO-8601: floor(seconds / bucket) */

typedef struct {
    uint32_t psf_id;
    uint32_t first_insn;
    uint32_t n_insns;
    uint32_t transform;   /* SHOAL_XF_* */
    double bucket;        /* the bucket width, with a transform */
} shoal_prog;

/* Everything the C ingest path evaluates: one trie for all fields any program
 * reads, and one program per natively compiled PSF. */
typedef struct {
    shoal_trie trie;
    const shoal_prog *progs;
    uint32_t n_progs;
    const shoal_insn *insns;
    const shoal_lit *lits;
    const char *lit_pool;
    uint32_t key_required;  /* 1: program 0 is the store's key; a record whose
                               key is not a string or number is rejected
                               (SHOAL_E_NO_KEY) */
    uint32_t reserved;
} shoal_psfset;

#define SHOAL_ORIGIN_NONE 0    /* computed: true/false/null, no bytes */
#define SHOAL_ORIGIN_RECORD 1  /* start/len locate the value's text in the record */
#define SHOAL_ORIGIN_LIT 2     /* start/len locate canonical bytes in lit_pool */

typedef struct {
    uint8_t type;     /* SHOAL_T_* */
    uint8_t flags;    /* SHOAL_VF_* */
    uint8_t origin;   /* SHOAL_ORIGIN_* */
    uint8_t reserved;
    uint32_t start;
    uint32_t len;
} shoal_val;

/* Run program `prog` of `set` over a record whose trie slots are filled. */
int shoal_eval(const shoal_psfset *set, uint32_t prog, const char *rec,
               const shoal_slot *slots, shoal_val *out);

/* Canonical bytes of an evaluation result if it is indexable (string, number
 * or true): returns the length (> 0), 0 if not indexable, or SHOAL_E_SPACE. */
int64_t shoal_val_canon(const shoal_psfset *set, const char *rec, const shoal_val *v,
                        char *dst, size_t cap);

/* The canonical bytes program `prog` indexes for value v: shoal_val_canon's,
 * or with a transform the bucket's number (0: no value). */
int64_t shoal_prog_canon(const shoal_psfset *set, uint32_t prog, const char *rec, const shoal_val *v,
                         char *dst, size_t cap);
/* Epoch seconds of an ISO-8601 date or date-time (YYYY-MM-DD, then T or a
 * space, HH:MM, :SS, .fraction, and Z or +HH:MM / +HHMM / +HH; UTC when it
 * names no zone): 1, or 0 when s is not one. */
int shoal_time_seconds(const char *s, size_t len, double *out);
/* floor(x / width) when it is below 2^53 in magnitude: 1 and *k, else 0. */
int shoal_bucket_of(double x, double width, int64_t *k);
/* The number bucketed program `prog` reads from each record buf[offsets[i],
 * +lengths[i]) (seconds, for a time): out[i] and ok[i] = 1, or ok[i] = 0
 * when it has none. What a range compares at its end buckets: the value as
 * ingest read it. */
int shoal_prog_numbers(const shoal_psfset *set, uint32_t prog, const char *buf, const uint64_t *offsets,
                       const uint32_t *lengths, uint32_t n, shoal_slot *slots, double *out, uint8_t *ok);
/* The bucket a bucketed program puts value v in: 1 and *k, or 0 (none). */
int shoal_prog_bucket(const shoal_psfset *set, uint32_t prog, const char *rec, const shoal_val *v, int64_t *k);

/* ---- records ------------------------------------------------------------ */
/* Record = header, key pointers, canonical values area (padded to 8), raw
 * payload (padded to 8). Records never straddle a page; a zero header means
 * "nothing more in this page". */
#define SHOAL_RECORD_MAGIC 21320      /* 0x5348, "SH" */
#define SHOAL_RECORD_VERSION 1
#define SHOAL_RF_TOMBSTONE 1
#define SHOAL_HEADER_BYTES 32
#define SHOAL_KP_BYTES 24
#define SHOAL_MAX_KPS 65535
#define SHOAL_KP_SPAN 1    /* value = raw string content inside the payload; canonical = 's' + bytes */
#define SHOAL_KP_CANON 2   /* value = canonical bytes in the values area */
#define SHOAL_KEY_PSF_ID 65535  /* key pointers of a keyed store's key; no PSF has this id */
#define SHOAL_ADDRESS_BITS 48
#define SHOAL_FIRST_ADDRESS 64   /* address 0 means "none"; the log starts here */

typedef struct {
    uint32_t crc;           /* CRC32C of bytes [4, end of payload) */
    uint16_t magic;
    uint8_t version;
    uint8_t flags;          /* SHOAL_RF_* */
    uint32_t size;          /* whole record in bytes, multiple of 8 */
    uint32_t payload_bytes;
    uint16_t n_kps;
    uint16_t reserved;
    uint32_t values_bytes;  /* canonical values area, unpadded */
    uint64_t aux;           /* the record's tag: a hash of its own address keyed by the log's
                               tag_key (never 0); 0 in records written before tags */
} shoal_record_header;

typedef struct {
    uint64_t prev_psf;      /* bits 0..47: previous key pointer on this chain (0: end); 48..63: psf_id */
    uint32_t value_off;     /* value bytes' offset from the record start */
    uint32_t value_len;
    uint16_t kp_index;      /* position of this key pointer in its record */
    uint8_t value_kind;     /* SHOAL_KP_* */
    uint8_t reserved;
    uint32_t hash32;        /* low 32 bits of shoal_hash(psf_id, canonical value) */
} shoal_key_pointer;

/* A cold segment file as readers see it (store/cold.py fills it): frame i
 * holds log bytes [address + i * frame_bytes, + frame_bytes) (the last may
 * be shorter) at file bytes [offsets[i], offsets[i + 1]). Immutable once
 * published in shoal_log.cold. */
typedef struct shoal_codec shoal_codec;
#define SHOAL_COLD_MAX_FRAME 32768  /* raw bytes a cold frame may hold (read.c decodes on the stack) */
typedef struct {
    int32_t fd;
    uint32_t frame_bytes;
    uint64_t address;
    uint64_t raw_bytes;
    uint64_t n_frames;
    const uint64_t *offsets;  /* n_frames + 1 entries */
} shoal_cold;

/* ---- hybrid log view ------------------------------------------------------ */
/* Python owns the frames and segment files; C reads and appends through this.
 * Invariant: begin <= head <= read_only <= tail. Page p lives in frame
 * p % n_frames while head <= page start; frame_page[] says which page a frame
 * holds (-1 while recycled). The writer recycles a frame only after the page it
 * held is flushed and head has passed it, so a reader that sees frame_page
 * change under it (seqlock check) can re-read the bytes from the segment file. */
typedef struct {
    uint32_t page_bits;           /* page size = 1 << page_bits */
    uint32_t n_frames;
    char **frames;
    int64_t *frame_page;          /* atomic */
    uint64_t begin_address;       /* atomic */
    uint64_t head_address;        /* atomic */
    uint64_t read_only_address;   /* atomic */
    uint64_t tail_address;        /* atomic; the writer publishes it after a record is complete */
    uint64_t flushed_until_address; /* atomic */
    int32_t *segment_fds;         /* fd of segment s, -1 if absent */
    uint32_t n_segment_slots;
    uint32_t segment_page_bits;   /* pages per segment = 1 << segment_page_bits */
    /* Segment files mapped read-only (NULL arrays: none): map s holds the
     * whole segment's address range, of which the first segment_map_bytes[s]
     * bytes are written pages that are never written again; reads there
     * copy from the map instead of a pread. A fault in a map (the file shrank
     * or the device failed) reads as SHOAL_E_IO, as a failed pread does. */
    char **segment_maps;          /* atomic entries */
    uint64_t *segment_map_bytes;  /* atomic entries; only grow while mapped */
    uint64_t records_appended;    /* writer only: records shoal_ingest appended since the view was made */
    /* Keys the records' tags (header aux), which let a reader tell a record
     * start from bytes that only look like one at a glance (see
     * shoal_read_job.verify_start). Secret: a client that knew it could
     * forge a tag. Set before the first append; the same for the log's life. */
    uint64_t tag_key;
    /* Cold segments (store/cold.py): cold[s] set = segment s's bytes are in a
     * cold file of compressed frames, read through `codec`; its raw file is
     * gone, or going (a reader that meets no raw file looks here again). */
    shoal_cold **cold;            /* atomic entries; NULL: no cold segments */
    const shoal_codec *codec;
    struct shoal_frame_cache *frame_cache; /* NULL: none; decompressed cold frames shared by readers */
} shoal_log;

/* Map `map_len` bytes of the segment file fd read-only (it may be longer
 * than the file, which grows into it) and publish the map as segment seg's,
 * readable below `valid` (its previous map must be unpublished). Returns
 * SHOAL_OK or SHOAL_E_IO (reads keep using pread). */
int shoal_segment_map(shoal_log *log, uint32_t seg, int fd, uint64_t map_len, uint64_t valid);

/* More of segment seg's map is written: readable below `valid` now. */
void shoal_segment_extend(shoal_log *log, uint32_t seg, uint64_t valid);

void *shoal_segment_unpublish(shoal_log *log, uint32_t seg);
void shoal_segment_unmap(void *map, uint64_t bytes);

/* Drop segment seg's mapped pages from this process's page tables (the
 * file pages stay in the page cache until the kernel evicts them): what a
 * benchmark of cold reads does before it drops the page cache. */
void shoal_segment_map_dontneed(shoal_log *log, uint32_t seg);

/* Free the file system blocks of [offset, offset + len) of a segment file
 * (fd open for writing), keeping its size: reads there find zeros. For the
 * log below begin (compaction). 0, or -errno (-EOPNOTSUPP where the file
 * system cannot punch holes). */
int shoal_punch_hole(int fd, uint64_t offset, uint64_t len);

/* Fault in n bytes of anonymous memory at p, writable, without writing them
 * (MADV_POPULATE_WRITE, Linux 5.14; -EINVAL before: nothing done). For log
 * frames prepared ahead of the writer, which may be filling them already.
 * 0, or -errno. */
int shoal_populate(char *p, uint64_t n);

/* ---- hash index ----------------------------------------------------------- */
typedef struct shoal_index shoal_index;

typedef struct {
    uint64_t buckets;
    uint64_t overflow_buckets;
    uint64_t entries;
    uint64_t bytes;
} shoal_index_stats;

shoal_index *shoal_index_new(uint32_t bucket_bits);
void shoal_index_free(shoal_index *index);
int shoal_index_grow(shoal_index *index);
/* Entries whose chain head lies below `below` (dead once begin passed them);
 * any thread. */
uint64_t shoal_index_count_below(shoal_index *index, uint64_t below);
/* Rebuild the table with 2**bucket_bits buckets, without the entries below
 * `below`. Writer only; readers carry on (the swap is growth's). */
int shoal_index_prune(shoal_index *index, uint64_t below, uint32_t bucket_bits);
uint64_t shoal_index_lookup(shoal_index *index, uint64_t hash);
int shoal_index_upsert(shoal_index *index, uint64_t hash, uint64_t kp_address,
                       uint64_t *prev_address);
void shoal_index_get_stats(shoal_index *index, shoal_index_stats *out);
uint64_t shoal_index_dump_bytes(shoal_index *index);
int shoal_index_dump(shoal_index *index, char *dst, uint64_t cap);
shoal_index *shoal_index_load(const char *src, uint64_t len, int *err);

/* ---- value tally (tally.c) ------------------------------------------------ */
/* Each tallied PSF's distinct values and how many records carry each. */
typedef struct shoal_tally shoal_tally;

typedef struct {
    uint64_t since;     /* key pointers at records below this are not counted */
    uint32_t values;    /* distinct values held */
    uint8_t overflow;   /* 1: a value was met that the tally could not take */
    uint8_t used;       /* 1: the PSF is tallied */
    uint16_t pad;
} shoal_tally_psf;

typedef struct {
    uint64_t values;
    uint64_t bytes;
} shoal_tally_stats;

#define SHOAL_TALLY_ALL 0xFFFFFFFFu /* shoal_tally_page: every PSF */
/* Every this many records of a value, the tally notes which one it is (its
 * key pointer's address and ordinal), so a window's count walks at most
 * about twice this many key pointers (shoal_count_window). */
#define SHOAL_TALLY_SAMPLE_EVERY 256

typedef struct {
    uint64_t kp;        /* a key pointer of the value... */
    uint64_t ordinal;   /* ...which is the value's ordinal-th record the tally counted */
} shoal_tally_sample;

shoal_tally *shoal_tally_new(uint32_t max_values, uint32_t max_value_bytes);
void shoal_tally_free(shoal_tally *t);
/* Samples are taken (1, the default) or not (a delta's or a window's tally). */
void shoal_tally_set_sampling(shoal_tally *t, int on);
/* Writer: add delta to the count of (psf_id, canon) for the key pointer at
 * `address` (ignored below the PSF's since or when it is not tallied); a
 * count that reaches 0 drops its value. */
int shoal_tally_add(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                    uint64_t address, int64_t delta);
/* Any thread: 1 and *count when the tally holds the value, else 0. */
int shoal_tally_get(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                    int64_t *count);
void shoal_tally_state(shoal_tally *t, uint32_t psf_id, shoal_tally_psf *out);
/* Any thread: 1 and *count (0 when a complete tally lacks the value) when
 * the tally can answer for psf_id's records since `since_at_most` or
 * earlier; 0 when it cannot (not tallied, tallied from later, or an
 * overflowed PSF without the value). */
int shoal_tally_count(shoal_tally *t, uint32_t psf_id, const char *canon, uint32_t len, uint64_t since_at_most,
                      int64_t *count);
/* Writer: forget psf_id's values; tally it from `since` on (tallied = 1) or not at all. */
int shoal_tally_reset(shoal_tally *t, uint32_t psf_id, uint64_t since, int tallied);
/* Any thread: psf_id's values, largest count first (ties by bytes), at most
 * `limit` (0: all), into dst as (int64 count, uint32 len, bytes) items.
 * Returns how many, or SHOAL_E_SPACE with *need the bytes they take. */
int64_t shoal_tally_list(shoal_tally *t, uint32_t psf_id, uint64_t limit, char *dst, uint64_t cap,
                         uint64_t *need);
/* Any thread: shoal_tally_list as JSON text, [[value, count], ...], when the
 * tally holds every value psf_id has from since_at_most or earlier on;
 * -1 when it does not, or when a value is an integer of more than 18 digits
 * (JSON readers take it for a float): then ask shoal_tally_list, or read
 * the log. *need is the text's length (or, with SHOAL_E_SPACE, the room to
 * give). */
int64_t shoal_tally_list_json(shoal_tally *t, uint32_t psf_id, uint64_t limit, uint64_t since_at_most, char *dst,
                              uint64_t cap, uint64_t *need);
void shoal_tally_get_stats(shoal_tally *t, shoal_tally_stats *out);
/* Writer on dst: add sign * each of src's counts. */
int shoal_tally_merge(shoal_tally *dst, shoal_tally *src, int sign);
/* Tally the key pointers (of psf_id, or SHOAL_TALLY_ALL) of the records in
 * buf (log bytes [base, base + len), page aligned) from *pos on that lie in
 * [lo, hi) into t; with `only`, just the values `only` holds, at or past its
 * since. Returns as shoal_scan: SHOAL_OK at the buffer's end, SHOAL_END at a
 * zero header or hi, SHOAL_E_CORRUPT at a bad header (*pos at it). */
int shoal_tally_page(const char *buf, uint64_t base, uint64_t len, uint64_t *pos, uint64_t lo, uint64_t hi,
                     uint32_t psf_id, shoal_tally *t, shoal_tally *only);
uint64_t shoal_tally_dump_bytes(shoal_tally *t);
int shoal_tally_dump(shoal_tally *t, char *dst, uint64_t cap);
shoal_tally *shoal_tally_load(const char *src, uint64_t len, uint32_t max_values, uint32_t max_value_bytes,
                              int *err);

/* ---- ingest --------------------------------------------------------------- */
/* Values computed in Python (slow-path PSFs) for records of the current job. */
typedef struct {
    uint32_t rec;        /* index into spans; extras are sorted by rec */
    uint32_t psf_id;
    uint32_t off;        /* canonical value bytes in extra_pool */
    uint32_t len;
} shoal_extra;

typedef struct {
    uint64_t address;    /* where the record landed, 0 if rejected or dry run */
    int32_t status;      /* SHOAL_OK or SHOAL_E_* */
    uint32_t err_off;    /* offset in the record text of a parse error */
} shoal_rec_result;

/* One record's plan, from shoal_ingest_prepare to shoal_ingest_commit. */
typedef struct {
    uint32_t first_kp;               /* its key pointers: plan[first_kp, +n_kps) */
    uint32_t n_kps;
    uint32_t size;                   /* its bytes in the log */
    uint32_t values_bytes;           /* its values area, unpadded */
    uint32_t text_crc;               /* with text_crc_ok: the text's share of the CRC (shoal_crc32c_part) */
    uint32_t text_crc_ok;
} shoal_ingest_prep;

typedef struct {
    const char *buf;                 /* input chunk the spans point into */
    shoal_span *spans;
    uint32_t n_spans;
    uint32_t n_extras;
    const shoal_extra *extras;
    const char *extra_pool;
    uint32_t dry_run;                /* 1: validate and evaluate only */
    uint32_t max_record_bytes;
    uint32_t next_span;              /* in/out: resume point */
    uint32_t next_extra;             /* in/out */
    shoal_rec_result *results;       /* n_spans entries */
    shoal_slot *slots;               /* scratch: trie.n_slots entries */
    char *scratch;                   /* scratch for canonical values */
    uint64_t scratch_bytes;
    uint64_t appended;               /* out, cumulative over resumed calls */
    uint64_t rejected;
    uint64_t bytes_appended;
    uint64_t text_bytes;             /* out: record text bytes looked at */
    uint64_t first_address;          /* out: first record appended (0: none yet) */
    uint64_t last_address;           /* out: last record appended */
    uint32_t *rejects;               /* out: indexes of rejected spans (n_spans capacity) */
    uint32_t n_rejects;
    uint32_t tombstones;             /* 1: append tombstones: flag SHOAL_RF_TOMBSTONE, no
                                        programs run, key pointers come from extras only */
    /* NDJSON framed by the call itself (frame = 1, no extras): when the loop
     * reaches n_spans it frames the next line of buf[frame_pos, frame_len)
     * into spans[n_spans++], so each record is read from memory once, just
     * before its parse, instead of by a framing pass over the whole chunk.
     * Framing stops at span_cap spans, once frame_pos reaches frame_stop, or
     * where shoal_frame_ndjson would (the end; a partial line unless final). */
    uint32_t frame;
    uint32_t frame_final;
    uint32_t span_cap;               /* capacity of spans, results and rejects */
    uint64_t frame_pos;              /* in/out: next byte to frame */
    uint64_t frame_len;
    uint64_t frame_stop;
    uint64_t frame_line;             /* in/out: line number at frame_pos */
    shoal_tally *tally;              /* each appended key pointer is counted here (NULL: none) */
    /* The plans between the two calls (ingest.c): prepare fills them from
     * next_span on, commit consumes [next_commit, next_span). */
    uint64_t page_size;              /* the log's: a record must fit one page */
    shoal_ingest_prep *prep;         /* span_cap (or n_spans) entries, by span */
    void *plan;                      /* plan_cap key pointer plans (shoal_kp_plan_bytes() each) */
    uint32_t plan_cap;               /* at least SHOAL_MAX_PLAN */
    uint32_t n_plan;                 /* in/out: plans used; the caller zeroes it once all are committed */
    uint64_t scratch_used;           /* in/out: scratch used; zeroed with n_plan */
    uint32_t next_commit;            /* in/out: the first span commit has not counted */
    void **tally_hints;              /* plan_cap entries: each plan's tally entry, looked up by prepare */
    const void *tally_table;         /* the tally's table those were looked up in */
} shoal_ingest_job;

#define SHOAL_MAX_PLAN 4096          /* key pointers per record, at most */

/* Frame (job->frame), validate and evaluate records from next_span on into
 * plans, with no shared state touched: ingesting threads run it at once,
 * outside the writer lock. A rejected record's result says why. Returns
 * SHOAL_OK once framing stops or every span is prepared, SHOAL_OUT_FULL when
 * the plans or scratch are full (commit, zero n_plan and scratch_used, call
 * again), or an error (the records before next_span are prepared: commit
 * them, then raise). */
int shoal_ingest_prepare(shoal_ingest_job *job, const shoal_psfset *set);

/* Append the prepared records [next_commit, next_span) at the log tail in
 * order and link their key pointers into the index and tally; count every
 * span (appended, rejected, text_bytes). The writer's part: one caller at a
 * time. SHOAL_OK when all are done, SHOAL_NEED_PAGE when the next record does
 * not fit in the tail page (turn the page and call again), or an error. */
int shoal_ingest_commit(shoal_ingest_job *job, shoal_log *log, shoal_index *index);

size_t shoal_kp_plan_bytes(void);

/* ---- projections (project.c) ------------------------------------------------ */
#define SHOAL_PROJECT_OPEN 1    /* write key (the JSON text `"k":`) and open an object */
#define SHOAL_PROJECT_LEAF 2    /* write key and the value at slot, unless it is missing */
#define SHOAL_PROJECT_CLOSE 3   /* close the object the last open began (dropped if empty) */
#define SHOAL_PROJECT_MAX_DEPTH 64

typedef struct {
    uint32_t op;            /* SHOAL_PROJECT_* */
    uint32_t slot;
    uint32_t key_off;       /* the key's JSON text, colon included, in keys */
    uint32_t key_len;
} shoal_project_op;

/* Rewrite records buf[offsets[i], +lengths[i]) for i in [next, n) into out
 * at out_len on, each followed by '\n', their places in out_offsets and
 * out_lengths. Resumable: SHOAL_E_SPACE when the next record may not fit
 * (bound_per_record + its length bytes), next and out_len saying where it
 * stopped; the caller grows out and calls again. */
typedef struct {
    const shoal_psfset *set;       /* the fields' paths: their trie */
    const shoal_project_op *ops;
    uint32_t n_ops;
    const char *keys;
    const char *buf;
    const uint64_t *offsets;
    const uint32_t *lengths;
    uint32_t n;
    uint32_t next;                 /* in/out */
    shoal_slot *slots;             /* scratch: the trie's n_slots */
    char *out;
    uint64_t cap;
    uint64_t out_len;              /* in/out */
    uint64_t bound_per_record;     /* output bytes a record adds beyond its own length, at most */
    uint64_t *out_offsets;
    uint32_t *out_lengths;
} shoal_project_job;

int shoal_project(shoal_project_job *job);

/* ---- counts (chain.c) ---------------------------------------------------- */
/* How many records of the chain of (psf_id, canon) lie in [lo, hi): walked
 * from the index head, or from the tally's nearest sample at or above hi,
 * jumping between samples inside the window (NULL tally: a plain walk). */
typedef struct {
    uint32_t psf_id;
    uint64_t hash;            /* shoal_hash(psf_id, canon) */
    const char *canon;
    uint32_t canon_len;
    uint64_t lo, hi;
    uint64_t count;           /* out */
    uint64_t walked;          /* out: key pointers read */
    int32_t err;              /* out */
    uint64_t err_address;
} shoal_count_job;

int shoal_count_window(shoal_count_job *job, shoal_log *log, shoal_index *index, shoal_tally *tally);

/* Every record address of the chain of (psf_id, canon) in [lo, hi), newest
 * first, from the key pointer `start` down (0: the index head), into out
 * (room for cap). A chain walk is a chase of dependent loads, one memory
 * latency per record; the tally's samples (one per SHOAL_TALLY_SAMPLE_EVERY
 * records of the value, each a key pointer with its ordinal) cut the chain
 * below `start` into pieces whose sizes are known, walked SHOAL_WALK_LANES
 * at a time in lockstep, so that many loads are in flight at once; each
 * piece writes at its own place, so the answer comes out in chain order.
 * SHOAL_OK with n_out set; SHOAL_E_SPACE with `need` (call again with that
 * room); or an error at err_address. A piece that holds more records than
 * its samples say (never, unless the tally is wrong) makes the call walk
 * the plain way. */
#define SHOAL_WALK_LANES 16
typedef struct {
    uint32_t psf_id;
    uint32_t canon_len;
    uint64_t hash;
    const char *canon;
    uint64_t lo, hi;
    uint64_t start;           /* a key pointer of the chain, 0: its head */
    uint64_t *out;
    uint64_t cap;
    uint64_t n_out;           /* out */
    uint64_t need;            /* out: with SHOAL_E_SPACE */
    uint32_t pieces;          /* out: pieces walked in lockstep (0: a plain walk) */
    int32_t err;              /* out */
    uint64_t err_address;
    uint32_t threads;         /* out: threads that walked the pieces (walk_all.c: walk_threads) */
} shoal_walk_all_job;

int shoal_walk_all(shoal_walk_all_job *job, shoal_log *log, shoal_index *index, shoal_tally *tally);

/* ---- reads ---------------------------------------------------------------- */
/* One more condition a walked or fetched record must meet: a key pointer of psf_id
 * whose value is canon (hash = shoal_hash(psf_id, canon)). */
typedef struct {
    uint64_t hash;
    const char *canon;
    uint32_t canon_len;
    uint32_t psf_id;
} shoal_cond;

/* Walk the chain of (psf_id, canon) newest first, emitting record addresses in
 * [lo, hi); with n_also, only those of records that also meet also[0..n_also)
 * (a conjunction driven by this chain: each record's key pointers are read,
 * the record itself is not copied). Resumable: next_kp = 0 starts at the
 * index head. */
typedef struct {
    uint64_t next_kp;         /* in/out */
    uint64_t lo;
    uint64_t hi;
    uint64_t hash;
    const char *canon;
    uint32_t canon_len;
    uint32_t psf_id;
    uint64_t *out;
    uint32_t cap;
    uint32_t n_out;           /* out */
    uint32_t done;            /* out: 1 when the chain has nothing more in range */
    int32_t err;              /* out: SHOAL_OK or error */
    uint64_t err_address;
    const shoal_cond *also;   /* NULL, or n_also more conditions */
    uint32_t n_also;
    uint32_t reserved;
} shoal_walk_job;

int shoal_walk(shoal_walk_job *job, shoal_log *log, shoal_index *index);

/* Copy records at addrs into out, back to back; each is verified (header and
 * CRC32C) first. offsets[i] = where record i's bytes start in out, lengths[i]
 * how many, status[i] its outcome (SHOAL_OK, SHOAL_E_CORRUPT if no valid
 * record starts there). With payload_only, only the JSON text is kept, and
 * a tombstone is not copied (status SHOAL_TOMBSTONE). With payload_only and
 * sep != 0, the byte sep follows each payload in out (not counted in
 * lengths[i]): sep = '\n' makes out NDJSON when no payload holds a line
 * break (shoal_count_line_breaks tells, when the caller needs to know).
 * Resumes at n_done; returns SHOAL_OUT_FULL when `out` fills, SHOAL_E_SPACE
 * when one record alone does not fit.
 * A record is read only if it lies wholly below the tail. With
 * verify_start, each address is also checked to be a record start: set it
 * for addresses a caller made up (Store.get), whose "header" might be bytes
 * inside a record (its values area holds bytes a client chose, checksum and
 * all) or past a page's last record (what a recycled frame held). A header
 * whose tag is that of its address is one the writer wrote there; any other
 * (an untagged record of an older store too) is checked by hopping record
 * headers from its page's start, at the cost of the headers before it.
 * Addresses from chains and scans are record starts by construction. */
typedef struct {
    const uint64_t *addrs;
    uint32_t n;
    uint32_t n_done;          /* in/out */
    char *out;
    uint64_t cap;
    uint64_t used;            /* out */
    uint64_t *offsets;
    uint32_t *lengths;
    int32_t *status;
    uint32_t payload_only;
    uint32_t sep;             /* 0, or a byte written after each payload */
    uint32_t verify_start;    /* 1: check that a record starts at each address */
    uint32_t reserved;
} shoal_read_job;

int shoal_read(shoal_read_job *job, shoal_log *log);

/* A chain walk that also reads: the records of (psf_id, canon) in [lo, hi),
 * newest first, their JSON text copied into out back to back (each verified
 * as by shoal_read; tombstones and records that fail verification are
 * skipped). With n_also conditions, only records that have a key pointer for
 * each of them too (a conjunction driven by this chain: the PSFs must have
 * been active over [lo, hi)). Returns SHOAL_OK when the chain is done,
 * SHOAL_OUT_FULL when out or max_records filled (call again: next_kp resumes
 * at the record that did not fit), SHOAL_E_SPACE when the first record
 * alone needs `need` bytes, or an error (err_address set). sep as for
 * shoal_read. */
typedef struct {
    uint64_t next_kp;         /* in/out; 0 starts at the index head */
    uint64_t lo;
    uint64_t hi;
    uint64_t hash;
    const char *canon;
    uint32_t canon_len;
    uint32_t psf_id;
    char *out;
    uint64_t cap;
    uint64_t used;            /* out */
    uint64_t *addrs;          /* out: max_records entries */
    uint64_t *offsets;
    uint32_t *lengths;
    uint32_t max_records;
    uint32_t n_out;           /* out */
    uint32_t done;            /* out */
    int32_t err;              /* out */
    uint64_t err_address;
    uint64_t need;            /* out, with SHOAL_E_SPACE */
    uint32_t sep;             /* 0, or a byte written after each payload */
    uint32_t n_also;
    const shoal_cond *also;   /* n_also entries */
} shoal_fetch_job;

int shoal_fetch(shoal_fetch_job *job, shoal_log *log, shoal_index *index);

/* How many bytes of p[0..n) are '\n' or '\r' (32 bytes a step with AVX2). */
uint64_t shoal_count_line_breaks(const char *p, uint64_t n);

/* A store's reader gate: counts the readers inside native calls, so that
 * closing the store waits for them and compaction closes a deleted
 * segment's fd only once every reader that might pread it has left. Lock
 * free (atomics), so a native call can enter it itself: shoal_fetch_start
 * does, saving a point query two calls from Python. */
typedef struct {
    uint64_t state;            /* quiesced << 24 | inside: one atomic word, read whole */
    int32_t closed;
    int32_t reserved;
} shoal_gate;

#define SHOAL_GATE_INSIDE_BITS 24 /* readers inside now (low bits of state) */
int64_t shoal_gate_inside(shoal_gate *g);

int shoal_gate_enter(shoal_gate *g);   /* SHOAL_OK, or SHOAL_E_CLOSED (not entered) */
void shoal_gate_exit(shoal_gate *g);
/* A token: shoal_gate_idle_since(g, token) holds once every reader inside
 * at this call has left. */
uint64_t shoal_gate_mark(shoal_gate *g);
int shoal_gate_idle_since(shoal_gate *g, uint64_t token);

/* shoal_fetch from the head of the chain of (psf_id, canon), in one call with
 * no fields to set first (a point query's whole native work): sets the job's
 * query fields, hash included (read it back to resume), then fetches. `canon`
 * need only live for this call: set job->canon before resuming. With a gate
 * (may be NULL), the call is made inside it; SHOAL_E_CLOSED if closed. */
int shoal_fetch_start(shoal_fetch_job *job, shoal_log *log, shoal_index *index, const char *canon,
                      uint32_t canon_len, uint32_t psf_id, uint64_t lo, uint64_t hi, uint32_t max_records,
                      uint32_t sep, shoal_gate *gate);

/* Keyed stores: live[i] = 1 when the record at addrs[i] is the newest
 * version of its key (the first record on its key chain whose key equals its
 * own) and is not a tombstone; 0 otherwise (superseded, deleted, a tombstone,
 * below begin, or no valid record there). One call per batch. */
typedef struct {
    const uint64_t *addrs;
    uint32_t n;
    uint32_t reserved;
    uint8_t *live;            /* out: n entries */
    int32_t err;              /* out: SHOAL_OK or SHOAL_E_IO */
    uint32_t reserved2;
    uint64_t err_address;
} shoal_live_job;

int shoal_live(shoal_live_job *job, shoal_log *log, shoal_index *index);

/* Scan records in a buffer holding log bytes [base, base + len). Tombstones
 * never match. */
#define SHOAL_SCAN_ALL 0       /* every record */
#define SHOAL_SCAN_TRUTHY 1    /* records where program `prog` yields a truthy value */
#define SHOAL_SCAN_EQUALS 2    /* records where program `prog` yields canonical == canon */
#define SHOAL_SCAN_BUCKETS 3   /* records whose bucket (a bucketed program's) is in [kmin, kmax] */
typedef struct {
    const char *buf;
    uint64_t base;
    uint64_t len;
    uint64_t pos;             /* in/out: address of the next record to look at */
    uint64_t lo;
    uint64_t hi;
    uint32_t mode;
    uint32_t prog;
    const char *canon;
    uint32_t canon_len;
    uint32_t cap;
    uint64_t *out;            /* matching record addresses, ascending */
    uint32_t n_out;           /* out */
    int32_t err;              /* out */
    uint64_t err_address;
    shoal_slot *slots;        /* scratch: trie.n_slots entries */
    char *scratch;
    uint64_t scratch_bytes;
    int64_t kmin, kmax;       /* SHOAL_SCAN_BUCKETS */
} shoal_scan_job;

int shoal_scan(shoal_scan_job *job, const shoal_psfset *set);

/* Recovery: verify records in buf (log bytes [base, base + len)) from *pos on
 * and re-link their key pointers into the index and count them in the tally
 * (each NULL: not).
 * Stops at the end of the buffer (SHOAL_OK), a zero header (SHOAL_END, *pos
 * at it), or a bad record (SHOAL_E_CORRUPT, *pos at it). */
int shoal_replay(const char *buf, uint64_t base, uint64_t len, uint64_t *pos,
                 uint32_t page_bits, shoal_index *index, shoal_tally *tally, uint64_t *records);

/* ---- compressed frames (frame.c): the compressed cold tier's unit --------- */
/* zstd's entry points, from the zstandard wheel's cffi module (store/frames.py
 * binds them once per process); every one must be set. */
typedef struct {
    void *createCCtx, *freeCCtx, *compressCCtx, *compress_usingCDict, *createCDict, *freeCDict;
    void *createDCtx, *freeDCtx, *decompressDCtx, *decompress_usingDDict, *createDDict, *freeDDict;
    void *isError, *compressBound;
} shoal_zstd_api;
int shoal_zstd_bind(const shoal_zstd_api *api);

#define SHOAL_FRAME_MAGIC 0x5a4c4853u   /* "SHLZ" */
#define SHOAL_FRAME_MAX_RAW 1048576     /* raw bytes a frame may hold */
#define SHOAL_FRAME_DICT 1              /* flags: compressed with the store's dictionary */
/* What precedes each frame's zstd bytes. crc: CRC32C of the header from
 * `address` on and of the compressed bytes; raw_crc: of the raw bytes. */
typedef struct {
    uint32_t magic;
    uint32_t crc;
    uint64_t address;     /* log address of the first raw byte */
    uint32_t raw_len;
    uint32_t comp_len;
    uint32_t raw_crc;
    uint32_t flags;
} shoal_frame_header;

/* A compression level and, if dict_len, a dictionary (copied): NULL when zstd
 * is not bound, or on allocation failure. */
shoal_codec *shoal_codec_new(const char *dict, uint64_t dict_len, int level);
void shoal_codec_free(shoal_codec *c);
/* The most bytes a frame of raw_len raw bytes takes (0: zstd not bound). */
uint64_t shoal_frame_bound(uint64_t raw_len);
/* Compress log bytes [address, address + n) at src as frames of frame_raw raw
 * bytes (the last may be shorter), back to back in out; offsets[i] = where
 * frame i starts. Returns the bytes written, or SHOAL_E_SPACE when out or
 * max_frames is too small (nothing usable written), SHOAL_E_ARG. */
int64_t shoal_frames_compress(shoal_codec *c, uint64_t address, const char *src, uint64_t n, uint32_t frame_raw,
                              char *out, uint64_t cap, uint64_t *offsets, uint32_t max_frames, uint32_t *n_frames);
/* The size of the frame at f (header, compressed bytes, padding), checked to
 * fit in avail bytes, or SHOAL_E_CORRUPT. */
int64_t shoal_frame_size(const char *f, uint64_t avail);
/* Walk a cold file's frames in data[0, size) from the start, each checked
 * without decompressing it (header, CRC32C of header and compressed bytes;
 * raw_crc is checked where a read decompresses it): consecutive log bytes
 * from `address` (UINT64_MAX: the first frame's), every frame but the last
 * holding the first's raw length. A file that starts with a hole (whole
 * SHOAL_HOLE_BLOCKs of zeros: compaction freed the frames below begin) is
 * walked from the first frame after it, which must lie above `address`.
 * Stops at the first frame that does not check or follow, or after `max`;
 * offsets[i] = where the i-th good frame starts. Returns the bytes up to
 * the end of the good frames; *n frames of *raw_bytes raw bytes from
 * *first, *frame_raw each. */
#define SHOAL_HOLE_BLOCK 4096
int64_t shoal_frames_walk(const char *data, uint64_t size, uint64_t address, uint64_t *offsets, uint64_t max,
                          uint64_t *n, uint64_t *first, uint64_t *raw_bytes, uint32_t *frame_raw);
/* Decompress the frame at f (avail bytes readable there) that must hold log
 * address `address` first, into dst: its raw length, or SHOAL_E_CORRUPT (see
 * frame.c: header, address, both CRCs), SHOAL_E_SPACE (cap too small),
 * SHOAL_E_ARG (a dictionary frame, a codec without one). Any thread. */
int64_t shoal_frame_decompress(const shoal_codec *c, const char *f, uint64_t avail, uint64_t address,
                               char *dst, uint64_t cap);

/* A cache of decompressed cold frames shared by every reader of a log
 * (frame.c): about `bytes` of frames of at most frame_bytes each, set-
 * associative, a lock per set. NULL on allocation failure. */
struct shoal_frame_cache;
struct shoal_frame_cache *shoal_frame_cache_new(uint64_t bytes, uint32_t frame_bytes);
void shoal_frame_cache_free(struct shoal_frame_cache *c);
/* Hits and misses since it was made (for stats). */
void shoal_frame_cache_counts(const struct shoal_frame_cache *c, uint64_t *hits, uint64_t *misses);
/* If the cache holds the frame at log address `address`, copy its bytes
 * [at, at + n) (as many as it has) into dst, set *len to the frame's length
 * and return 1; else 0. Put a frame there (len <= the cache's frame_bytes).
 * Any thread (read.c's cold reads; the tests). */
int shoal_frame_cache_get(struct shoal_frame_cache *c, uint64_t address, uint64_t at, char *dst, uint64_t n,
                          uint32_t *len);
void shoal_frame_cache_put(struct shoal_frame_cache *c, uint64_t address, const char *src, uint32_t len);

/* END CDEF */

#endif
