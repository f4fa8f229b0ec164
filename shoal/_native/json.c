/* json.c -- JSON validation, field extraction, canonical values, hashing, CRC32C, framing. (stub) */
#include "shoal.h"
int shoal_parse(const char *buf, size_t len, const shoal_trie *trie, shoal_slot *slots, size_t *err_off) { return SHOAL_E_ARG; }
int64_t shoal_canon(const char *text, size_t len, uint8_t type, char *dst, size_t cap) { return SHOAL_E_ARG; }
uint64_t shoal_hash(uint32_t psf_id, const char *canon, size_t len) { return 0; }
uint32_t shoal_crc32c(uint32_t crc, const char *buf, size_t len) { return 0; }
int shoal_frame_ndjson(const char *buf, size_t len, int final, uint64_t first_line, shoal_span *out, size_t cap, size_t *n_out, size_t *consumed) { return SHOAL_E_ARG; }
int shoal_frame_array(shoal_array_state *st, const char *buf, size_t len, int final, shoal_span *out, size_t cap, size_t *n_out, size_t *consumed, size_t *err_off) { return SHOAL_E_ARG; }
