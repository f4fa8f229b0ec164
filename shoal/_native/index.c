/* index.c -- the hash index. (stub) */
#include "shoal.h"
shoal_index *shoal_index_new(uint32_t bucket_bits) { return 0; }
void shoal_index_free(shoal_index *index) {}
int shoal_index_grow(shoal_index *index) { return SHOAL_E_ARG; }
uint64_t shoal_index_lookup(shoal_index *index, uint64_t hash) { return 0; }
int shoal_index_upsert(shoal_index *index, uint64_t hash, uint64_t kp_address, uint64_t *prev_address) { return SHOAL_E_ARG; }
void shoal_index_get_stats(shoal_index *index, shoal_index_stats *out) {}
uint64_t shoal_index_dump_bytes(shoal_index *index) { return 0; }
int shoal_index_dump(shoal_index *index, char *dst, uint64_t cap) { return SHOAL_E_ARG; }
shoal_index *shoal_index_load(const char *src, uint64_t len, int *err) { return 0; }
