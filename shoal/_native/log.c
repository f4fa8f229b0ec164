/* log.c -- record append, chain walks, reads, scans, replay. (stub) */
#include "shoal.h"
int shoal_ingest(shoal_ingest_job *job, const shoal_psfset *set, shoal_log *log, shoal_index *index) { return SHOAL_E_ARG; }
int shoal_walk(shoal_walk_job *job, shoal_log *log, shoal_index *index) { return SHOAL_E_ARG; }
int shoal_read(shoal_read_job *job, shoal_log *log) { return SHOAL_E_ARG; }
int shoal_scan(shoal_scan_job *job, const shoal_psfset *set) { return SHOAL_E_ARG; }
int shoal_replay(const char *buf, uint64_t base, uint64_t len, uint64_t *pos, uint32_t page_bits, shoal_index *index, uint64_t *records) { return SHOAL_E_ARG; }
