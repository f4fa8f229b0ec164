/*
 * project.c -- projections: each record of a batch rewritten as an object of
 * just some of its paths (Elasticsearch's _source filtering), in one call.
 *
 * Python compiles the fields into a set (their paths in one trie, as PSF
 * programs) and a plan: the paths' tree in pre-order, as ops that open a
 * key's object, emit a key with the value at a slot, or close an object.
 * Per record: parse with the trie (the values located, never copied), then
 * follow the plan, copying each value's text as stored.
 *
 * Must stay true:
 *   - A missing path emits nothing, and an object all of whose paths are
 *     missing is rolled back whole (no "repo":{}), so the output is the
 *     record's own values and nothing else.
 *   - Output is NDJSON: each projected record is followed by '\n'; a
 *     value's text may hold line breaks (pretty-printed input), which are
 *     JSON whitespace outside strings: they are written as spaces.
 */
#include "shoal.h"

#include <string.h>

typedef struct {
    uint64_t start;  /* where the object's key began (rolled back to when it stays empty) */
    int any;         /* something was written inside */
} frame_t;

int shoal_project(shoal_project_job *job) {
    const shoal_psfset *set = job->set;
    char *out = job->out;
    uint64_t pos = job->out_len;
    frame_t stack[SHOAL_PROJECT_MAX_DEPTH + 1];
    for (; job->next < job->n; job->next++) {
        uint32_t i = job->next;
        const char *text = job->buf + job->offsets[i];
        uint32_t len = job->lengths[i];
        size_t err_off = 0;
        int rc = shoal_parse(text, len, &set->trie, job->slots, &err_off);
        if (rc != SHOAL_OK) return SHOAL_E_CORRUPT; /* a stored record always parses */
        uint64_t need = pos + job->bound_per_record + len;
        if (need > job->cap) {
            job->out_len = pos;
            return SHOAL_E_SPACE;
        }
        uint64_t rec_start = pos;
        int depth = 0;
        stack[0].start = pos;
        stack[0].any = 0;
        out[pos++] = '{';
        for (uint32_t k = 0; k < job->n_ops; k++) {
            const shoal_project_op *op = &job->ops[k];
            if (op->op == SHOAL_PROJECT_CLOSE) {
                frame_t *f = &stack[depth--];
                if (!f->any) {
                    pos = f->start; /* nothing inside: drop the key and its comma */
                } else {
                    out[pos++] = '}';
                    stack[depth].any = 1;
                }
                continue;
            }
            uint64_t key_start = pos;
            if (op->op == SHOAL_PROJECT_LEAF) {
                const shoal_slot *s = &job->slots[op->slot];
                if (s->type == SHOAL_T_MISSING) continue;
                if (stack[depth].any) out[pos++] = ',';
                memcpy(out + pos, job->keys + op->key_off, op->key_len);
                pos += op->key_len;
                const char *v = text + s->start;
                for (uint32_t b = 0; b < s->len; b++) {
                    char c = v[b];
                    out[pos++] = (c == '\n' || c == '\r') ? ' ' : c;
                }
                stack[depth].any = 1;
            } else { /* SHOAL_PROJECT_OPEN */
                if (depth == SHOAL_PROJECT_MAX_DEPTH) return SHOAL_E_ARG;
                if (stack[depth].any) out[pos++] = ',';
                memcpy(out + pos, job->keys + op->key_off, op->key_len);
                pos += op->key_len;
                out[pos++] = '{';
                depth++;
                stack[depth].start = key_start;
                stack[depth].any = 0;
            }
        }
        out[pos++] = '}';
        job->out_offsets[i] = rec_start;
        job->out_lengths[i] = (uint32_t)(pos - rec_start);
        out[pos++] = '\n';
    }
    job->out_len = pos;
    return SHOAL_OK;
}
