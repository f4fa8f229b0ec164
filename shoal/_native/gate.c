/*
 * gate.c -- a store's reader gate: counts the readers inside native calls,
 * so that closing the store waits for them and compaction closes a deleted
 * segment's fd only once every reader that might pread it has left.
 *
 * state = quiesced << SHOAL_GATE_INSIDE_BITS | inside, one atomic word read
 * whole. Must stay true: a reader counted in `inside` either saw closed == 0
 * after counting itself, or leaves at once (enter's seq_cst add, then load);
 * the quiescence count rises each time `inside` drops to 0, in the same step
 * (exit's compare-exchange), so a token from shoal_gate_mark is passed only
 * once every reader inside at the mark has left. Lock free, so a native call
 * can enter it itself (shoal_fetch_start).
 */
#include "shoal.h"

#define GATE_INSIDE ((1ULL << SHOAL_GATE_INSIDE_BITS) - 1)

int shoal_gate_enter(shoal_gate *g) {
    __atomic_add_fetch(&g->state, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g->closed, __ATOMIC_SEQ_CST)) {
        shoal_gate_exit(g);
        return SHOAL_E_CLOSED;
    }
    return SHOAL_OK;
}

void shoal_gate_exit(shoal_gate *g) {
    /* one step: the last reader out also counts the quiescence */
    uint64_t old = __atomic_load_n(&g->state, __ATOMIC_SEQ_CST), next;
    do {
        next = old - 1;
        if (!(next & GATE_INSIDE)) next += 1ULL << SHOAL_GATE_INSIDE_BITS;
    } while (!__atomic_compare_exchange_n(&g->state, &old, next, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

int64_t shoal_gate_inside(shoal_gate *g) {
    return (int64_t)(__atomic_load_n(&g->state, __ATOMIC_SEQ_CST) & GATE_INSIDE);
}

uint64_t shoal_gate_mark(shoal_gate *g) {
    uint64_t st = __atomic_load_n(&g->state, __ATOMIC_SEQ_CST);
    uint64_t q = st >> SHOAL_GATE_INSIDE_BITS;
    /* nobody inside: idle at once (a token below q); else at the next quiescence */
    return (st & GATE_INSIDE) ? q : q - 1;
}

int shoal_gate_idle_since(shoal_gate *g, uint64_t token) {
    uint64_t st = __atomic_load_n(&g->state, __ATOMIC_SEQ_CST);
    return (int64_t)((st >> SHOAL_GATE_INSIDE_BITS) - token) > 0 || !(st & GATE_INSIDE);
}
