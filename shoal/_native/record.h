/*
 * record.h -- the record layout, in C: where each part of a record lies, how
 * a key pointer packs its chain link, which addresses may hold a record, how
 * a header is checked, and the encoder that writes a record. shoal.h declares
 * the structs (cffi reads them); every C file goes through the functions here
 * instead of spelling a formula out. The Python twin is shoal/store/record.py;
 * tests/native/test_layout.py reads the SHOAL_FIELD lines below and checks
 * that record.py's struct formats and constants agree.
 *
 * A record at log address a (8-aligned; it never straddles a page):
 *
 *   [0, 32)                    header (shoal_record_header)
 *   [32, values_off)           n_kps key pointers, SHOAL_KP_BYTES each;
 *                              key pointer k at shoal_kp_offset(k)
 *   [values_off, payload_off)  values area: values_bytes of canonical values,
 *                              zero-padded to 8
 *   [payload_off, size)        payload: payload_bytes of JSON text exactly as
 *                              ingested, zero-padded to 8
 *
 * Must stay true (readers rely on each; the encoder keeps them):
 *   - size == shoal_record_bytes(n_kps, values_bytes, payload_bytes): a header
 *     whose size disagrees with its parts is not a record.
 *   - crc is the first field and covers bytes [4, payload end), pads of the
 *     payload excluded; the values area's pad is covered and is zero.
 *   - Key pointer k stores kp_index = k, so a chain that reaches a key pointer
 *     finds its record (shoal_kp_record).
 *   - prev_psf = psf_id << SHOAL_PSF_SHIFT | the previous key pointer's
 *     address on the chain (0: the chain ends). Chains point backwards.
 *   - aux is the record's tag: shoal_record_tag of its own address (never 0);
 *     0 in records written before tags.
 */
#ifndef SHOAL_RECORD_H
#define SHOAL_RECORD_H
#include "shoal.h"

#include <string.h>

/* ---- addresses ---------------------------------------------------------- */

/* A log address is SHOAL_ADDRESS_BITS wide; the bits above hold a psf_id in a
 * key pointer's prev_psf (and a hash tag in an index entry, index.c). */
#define SHOAL_ADDR_MASK ((1ULL << SHOAL_ADDRESS_BITS) - 1)
#define SHOAL_PSF_SHIFT SHOAL_ADDRESS_BITS

/* ---- the layout's compile-time checks ------------------------------------- */

/* SHOAL_FIELD(struct, field, offset, bytes): the field lies at offset and is
 * that wide. record.py's struct formats and tests/native/test_layout.py say
 * the same; change all three together (the stored format changes with them). */
#define SHOAL_FIELD(type, field, offset, bytes)                                                   \
    _Static_assert(offsetof(type, field) == (offset) && sizeof(((type *)0)->field) == (bytes), \
                   #type "." #field " is not where record.py expects it")

SHOAL_FIELD(shoal_record_header, crc, 0, 4);
SHOAL_FIELD(shoal_record_header, magic, 4, 2);
SHOAL_FIELD(shoal_record_header, version, 6, 1);
SHOAL_FIELD(shoal_record_header, flags, 7, 1);
SHOAL_FIELD(shoal_record_header, size, 8, 4);
SHOAL_FIELD(shoal_record_header, payload_bytes, 12, 4);
SHOAL_FIELD(shoal_record_header, n_kps, 16, 2);
SHOAL_FIELD(shoal_record_header, reserved, 18, 2);
SHOAL_FIELD(shoal_record_header, values_bytes, 20, 4);
SHOAL_FIELD(shoal_record_header, aux, 24, 8);

SHOAL_FIELD(shoal_key_pointer, prev_psf, 0, 8);
SHOAL_FIELD(shoal_key_pointer, value_off, 8, 4);
SHOAL_FIELD(shoal_key_pointer, value_len, 12, 4);
SHOAL_FIELD(shoal_key_pointer, kp_index, 16, 2);
SHOAL_FIELD(shoal_key_pointer, value_kind, 18, 1);
SHOAL_FIELD(shoal_key_pointer, reserved, 19, 1);
SHOAL_FIELD(shoal_key_pointer, hash32, 20, 4);

_Static_assert(sizeof(shoal_record_header) == SHOAL_HEADER_BYTES, "SHOAL_HEADER_BYTES is the header's size");
_Static_assert(sizeof(shoal_key_pointer) == SHOAL_KP_BYTES, "SHOAL_KP_BYTES is a key pointer's size");
/* Key pointers start 8-aligned (their prev_psf is read whole) and so does
 * the values area after them; records are 8-aligned, so each part is. */
_Static_assert(SHOAL_HEADER_BYTES % 8 == 0 && SHOAL_KP_BYTES % 8 == 0, "record parts stay 8-aligned");
/* The CRC covers what follows it: it must be the first 4 bytes. */
_Static_assert(offsetof(shoal_record_header, crc) == 0 && offsetof(shoal_record_header, magic) == 4,
               "the CRC covers bytes [4, payload end)");
/* n_kps is 16 bits; a psf_id (the key's too) fits above the address in prev_psf. */
_Static_assert(SHOAL_MAX_KPS <= UINT16_MAX, "n_kps holds SHOAL_MAX_KPS");
_Static_assert(SHOAL_ADDRESS_BITS == 48 && 64 - SHOAL_PSF_SHIFT == 16 && SHOAL_KEY_PSF_ID < (1u << 16),
               "a psf_id fits in the 16 bits above a 48-bit address");
/* The log's first record: address 0 means "none", and a record is 8-aligned. */
_Static_assert(SHOAL_FIRST_ADDRESS > 0 && SHOAL_FIRST_ADDRESS % 8 == 0, "the first address is a record start");

/* ---- where the parts lie ----------------------------------------------------- */

static inline uint64_t shoal_pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* Key pointer k's offset from its record's start; for k = n_kps, where the
 * values area starts. */
static inline uint64_t shoal_kp_offset(uint32_t k) { return SHOAL_HEADER_BYTES + (uint64_t)k * SHOAL_KP_BYTES; }

/* The payload's offset in a record with n_kps key pointers and values_bytes
 * of values. */
static inline uint64_t shoal_payload_offset_for(uint32_t n_kps, uint64_t values_bytes) {
    return shoal_kp_offset(n_kps) + shoal_pad8(values_bytes);
}

/* The size of a record with these parts: a multiple of 8, at least
 * SHOAL_HEADER_BYTES. */
static inline uint64_t shoal_record_bytes(uint32_t n_kps, uint64_t values_bytes, uint64_t payload_bytes) {
    return shoal_payload_offset_for(n_kps, values_bytes) + shoal_pad8(payload_bytes);
}

static inline uint64_t shoal_payload_offset(const shoal_record_header *h) {
    return shoal_payload_offset_for(h->n_kps, h->values_bytes);
}

/* The end of the payload's text (its pad excluded): where the CRC stops. */
static inline uint64_t shoal_payload_end(const shoal_record_header *h) {
    return shoal_payload_offset(h) + h->payload_bytes;
}

/* ---- key pointers -------------------------------------------------------------- */

static inline uint32_t shoal_kp_psf(uint64_t prev_psf) { return (uint32_t)(prev_psf >> SHOAL_PSF_SHIFT); }
static inline uint64_t shoal_kp_prev(uint64_t prev_psf) { return prev_psf & SHOAL_ADDR_MASK; }
static inline uint64_t shoal_kp_pack(uint64_t prev, uint32_t psf_id) {
    return prev | ((uint64_t)psf_id << SHOAL_PSF_SHIFT);
}

/* The address of the record holding the key pointer kp, read at kp_addr. */
static inline uint64_t shoal_kp_record(uint64_t kp_addr, const shoal_key_pointer *kp) {
    return kp_addr - shoal_kp_offset(kp->kp_index);
}

/* ---- checks ------------------------------------------------------------------------ */

/* Whether a record may start at a in a log [begin, tail) with pages of
 * 2^page_bits bytes: inside the log, 8-aligned, and with room for a header
 * before its page ends. The first test for an address a caller handed in. */
static inline int shoal_record_address_ok(uint64_t a, uint64_t begin, uint64_t tail, uint32_t page_bits) {
    uint64_t page_size = 1ULL << page_bits;
    return a >= begin && a < tail && !(a & 7) && (a & (page_size - 1)) + SHOAL_HEADER_BYTES <= page_size;
}

/* Whether h's size agrees with its parts (which makes it a multiple of 8 and
 * at least SHOAL_HEADER_BYTES). */
static inline int shoal_header_size_ok(const shoal_record_header *h) {
    return shoal_record_bytes(h->n_kps, h->values_bytes, h->payload_bytes) == h->size;
}

/* Header sanity for a record claimed to start at addr, in a log whose records
 * end at or below `end` (the tail a reader loaded: bytes past it are being
 * written, or are what a recycled frame held before). The CRC is not checked. */
static inline int shoal_header_ok(const shoal_record_header *h, uint64_t addr, uint32_t page_bits, uint64_t end) {
    uint64_t page_size = 1ULL << page_bits;
    uint64_t off = addr & (page_size - 1);
    if (h->magic != SHOAL_RECORD_MAGIC || h->version != SHOAL_RECORD_VERSION) return 0;
    return shoal_header_size_ok(h) && off + h->size <= page_size && addr + h->size <= end;
}

/* Whether the CRC of the whole record at rec (checked header, any alignment)
 * holds. */
static inline int shoal_record_crc_ok(const char *rec) {
    shoal_record_header h; /* rec may be unaligned in an output buffer */
    memcpy(&h, rec, sizeof h);
    return shoal_crc32c(0, rec + 4, shoal_payload_end(&h) - 4) == h.crc;
}

/* The tag of a record at addr (header aux): keyed by the log's secret, so
 * bytes a client chose cannot carry the tag of where they lie; never 0,
 * which marks records written before tags. */
static inline uint64_t shoal_record_tag(uint64_t tag_key, uint64_t addr) {
    uint64_t in[2] = {tag_key, addr};
    uint64_t t = shoal_hash(0, (const char *)in, sizeof in);
    return t ? t : 1;
}

/* ---- the encoder ---------------------------------------------------------------------- */

/* A key pointer about to be written. */
typedef struct {
    uint32_t psf_id;
    uint8_t kind;      /* SHOAL_KP_* */
    uint32_t off;      /* SPAN: the string's content in the payload; CANON: the value in `values` */
    uint32_t len;
    uint32_t canon_off; /* the canonical value (what the tally counts): scratch[canon_off, +canon_len) */
    uint32_t canon_len;
    uint64_t hash;     /* shoal_hash(psf_id, canonical value) */
    uint64_t prev;     /* the chain's head before this record: the key pointer it links to */
} shoal_kp_plan;

/* Write a whole record at rec (8-aligned, with shoal_record_bytes(n_kps,
 * values_bytes, text_len) bytes of room): header, key pointers from kps (the
 * CANON ones' bytes copied from `values` into the values area, in order),
 * the text, the pads zeroed and the CRC last. values_bytes is the sum of the
 * CANON key pointers' lengths. text_crc: the text's share of the CRC
 * (shoal_crc32c_part), or NULL to read the text for it. Per record on the
 * ingest path: inline. */
static inline void shoal_record_encode(char *rec, uint64_t tag, uint8_t flags, const shoal_kp_plan *kps,
                                       uint32_t n_kps, const char *values, uint64_t values_bytes,
                                       const char *text, uint32_t text_len, const uint32_t *text_crc) {
    uint64_t values_off = shoal_kp_offset(n_kps);
    uint64_t payload_off = shoal_payload_offset_for(n_kps, values_bytes);
    shoal_record_header *h = (shoal_record_header *)rec;
    h->magic = SHOAL_RECORD_MAGIC;
    h->version = SHOAL_RECORD_VERSION;
    h->flags = flags;
    h->size = (uint32_t)shoal_record_bytes(n_kps, values_bytes, text_len);
    h->payload_bytes = text_len;
    h->n_kps = (uint16_t)n_kps;
    h->reserved = 0;
    h->values_bytes = (uint32_t)values_bytes;
    h->aux = tag;
    char *area = rec + values_off;
    uint64_t vpos = 0;
    for (uint32_t k = 0; k < n_kps; k++) {
        const shoal_kp_plan *pl = &kps[k];
        shoal_key_pointer *kp = (shoal_key_pointer *)(rec + shoal_kp_offset(k));
        kp->prev_psf = shoal_kp_pack(pl->prev, pl->psf_id);
        if (pl->kind == SHOAL_KP_SPAN) {
            kp->value_off = (uint32_t)(payload_off + pl->off);
        } else {
            memcpy(area + vpos, values + pl->off, pl->len);
            kp->value_off = (uint32_t)(values_off + vpos);
            vpos += pl->len;
        }
        kp->value_len = pl->len;
        kp->kp_index = (uint16_t)k;
        kp->value_kind = pl->kind;
        kp->reserved = 0;
        kp->hash32 = (uint32_t)pl->hash;
    }
    memset(area + vpos, 0, shoal_pad8(values_bytes) - values_bytes);
    memcpy(rec + payload_off, text, text_len);
    memset(rec + payload_off + text_len, 0, shoal_pad8(text_len) - text_len);
    /* The text's share: computed when it was parsed (text_crc, from
     * shoal_crc32c_part), else read from the input, where the parse left it. */
    uint32_t head = shoal_crc32c(0, rec + 4, payload_off - 4);
    h->crc = text_crc ? shoal_crc32c_join(head, text, text_len, *text_crc) : shoal_crc32c(head, text, text_len);
}

#endif
