/* eval.c -- PSF program evaluation. (stub) */
#include "shoal.h"
int shoal_eval(const shoal_psfset *set, uint32_t prog, const char *rec, const shoal_slot *slots, shoal_val *out) { return SHOAL_E_ARG; }
int64_t shoal_val_canon(const shoal_psfset *set, const char *rec, const shoal_val *v, char *dst, size_t cap) { return SHOAL_E_ARG; }
