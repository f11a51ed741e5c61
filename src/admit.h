/*
 * admit.h: connection admission bookkeeping for the front door.
 *
 * Counts open connections globally and per source, where a source is one
 * IPv4 address or one IPv6 /64 (an IPv6 host gets a /64 to itself, so
 * counting single addresses would let one host take every slot). An
 * IPv4-mapped IPv6 address counts as the IPv4 address.
 *
 * Memory: one small entry per source with an open connection, freed with
 * its last connection; at most max_total entries. Not thread-safe: one
 * thread (the front door's) owns a table.
 */
#ifndef TCS_ADMIT_H
#define TCS_ADMIT_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

struct admit;

struct admit_key {
	uint8_t b[16]; /* IPv4: ::ffff:a.b.c.d; IPv6: the /64, low half zero */
};

enum admit_result { ADMIT_OK, ADMIT_FULL, ADMIT_SOURCE_FULL, ADMIT__MAX };

/* A table for at most max_total connections, max_per_source per source. */
struct admit *admit_new(int max_total, int max_per_source);
void          admit_free(struct admit *);
/*
 * The source key and the peer address as text ("192.0.2.1", "2001:db8::1")
 * of a connection's address. 0, or -1 for a family that is not IP.
 */
int admit_key_of(
    const struct sockaddr *, socklen_t, struct admit_key *, char *text, size_t textlen);
/* Admits one connection from `k` (ADMIT_OK) or says which cap refuses it. */
enum admit_result admit_take(struct admit *, const struct admit_key *k);
/* Releases a connection admitted from `k`. */
void admit_release(struct admit *, const struct admit_key *k);
/* Connections open now (globally / from the source of k). */
int admit_total(const struct admit *);
int admit_count(const struct admit *, const struct admit_key *k);

#endif /* TCS_ADMIT_H */
