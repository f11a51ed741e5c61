/*
 * ratelimit.h: per-source-address token buckets with bounded memory.
 *
 * The table is set-associative with a fixed number of slots: an address
 * that is not present takes the least recently seen slot of its set, so a
 * flood from many addresses can never grow memory (it can only make buckets
 * of quiet addresses be forgotten, i.e. refilled, which errs on serving).
 */
#ifndef TCS_RATELIMIT_H
#define TCS_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* rps > 0, burst >= 1, slots rounded up to a multiple of the set size. */
struct ratelimit *ratelimit_new(double rps, int burst, size_t slots);
void              ratelimit_free(struct ratelimit *);
/* 1 if a request from `addr` may proceed now (and takes a token). Any thread. */
int ratelimit_allow(struct ratelimit *, const char *addr);
/* Same with an explicit monotonic clock in ms (tests). */
int ratelimit_allow_at(struct ratelimit *, const char *addr, int64_t now_ms);
/* Bytes of memory the table uses (constant after creation). */
size_t ratelimit_footprint(const struct ratelimit *);

#endif /* TCS_RATELIMIT_H */
