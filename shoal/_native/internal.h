/* internal.h -- functions shared between shoal's C files that are not part of
 * the Python ABI (shoal.h). */
#ifndef SHOAL_INTERNAL_H
#define SHOAL_INTERNAL_H
#include "shoal.h"

/* Chain head for `hash`, for the single writer only: it owns the table
 * pointer, so it skips the reader registration shoal_index_lookup does. */
uint64_t shoal_index_lookup_writer(shoal_index *index, uint64_t hash);

#endif
