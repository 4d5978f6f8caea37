/* bench: the load generator's shared state: options, the epoll loop's descriptor,
 * the shared receive buffer and the counters that subscribers (sub) and publishers
 * (pub) update. loadgen.c owns the one bench_t and passes it down; nothing here is
 * global.
 *
 * Owns: nothing by itself; loadgen.c allocates and frees the arrays it points to.
 * Single-threaded: one epoll loop, no locks. */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "hist.h"
#include "track.h"

enum bench_proto { BENCH_NATIVE, BENCH_SOCKETIO, BENCH_NCHAN };
enum bench_workload { BENCH_IDLE, BENCH_FANOUT, BENCH_TARGETED, BENCH_LATENCY };
enum { BENCH_MAX_PORTS = 16, BENCH_MAX_PIDS = 16 };

typedef struct bench_opts {
    int proto;               /* enum bench_proto */
    int workload;            /* enum bench_workload */
    const char *host;
    int ports[BENCH_MAX_PORTS];  /* one server, or nodes of a cluster (--port P1,P2,...) */
    int nports;
    const char *sub_path;    /* NULL: the protocol's usual path */
    const char *pub_path;    /* NULL: the protocol's usual path */
    long conns;
    long events;             /* latency: rate * duration */
    double rate;             /* latency: events per second */
    double duration_s;
    int pub_conns;
    int pipeline;            /* requests in flight per publisher connection */
    int handshakes;          /* subscriber handshakes in flight at once */
    double timeout_s;
    double idle_wait_s;
    double drain_s;
    double settle_s;
    int server_pids[BENCH_MAX_PIDS];  /* RSS and CPU time are summed over these */
    int nserver_pids;        /* 0: no RSS/CPU readings */
    int payload_bytes;       /* padding added to each event's data */
    const char *prefix;      /* channel name prefix */
    const char *event;       /* event name */
} bench_opts_t;

/* The first field of sub_t, pub_t and the publish timer, so an epoll pointer tells
 * what it points to. */
enum { BENCH_KIND_SUB = 1, BENCH_KIND_PUB = 2, BENCH_KIND_TIMER = 3 };

typedef struct sub sub_t;
typedef struct pub pub_t;

typedef struct bench {
    const bench_opts_t *opt;
    struct sockaddr_in addrs[BENCH_MAX_PORTS];  /* one per port, same order */
    int epfd;
    uint8_t *rbuf;           /* one receive buffer for every socket (read, parse, done) */
    size_t rbuf_cap;
    uint64_t rng;            /* xorshift state for mask keys */
    uint64_t now;            /* CLOCK_MONOTONIC ns, refreshed after each wait */

    sub_t *subs;
    long nsubs;
    long subs_started, subs_ready, subs_failed, subs_lost, handshakes_inflight;

    pub_t *pubs;
    int npubs;
    long next_seq;           /* next event number to publish */
    long events_total;
    long acked, pub_errors;
    int first_bad_status;
    uint64_t t_run_start, t_first_pub, t_last_ack, t_last_delivery;

    track_t track;
    hist_t latency;          /* publish (or scheduled publish) to delivery */
    hist_t ack;              /* publish request written to response read */
    uint64_t deliveries, unparsed;
    uint64_t reordered;      /* native: an offset not above the previous one */

    char error[240];         /* the first problem seen, for the report */
} bench_t;

uint64_t bench_now_ns(void);

/* Keeps the first error message only: later ones are usually its consequences. */
void bench_error(bench_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The channel subscriber or event `idx` uses: one shared channel for fan-out and
 * latency, one channel per subscriber otherwise. Returns the name length. */
int bench_channel(const bench_t *b, long idx, char *out, size_t cap);

/* The port, and the address, connection `idx` uses: subscriber i and publisher j
 * take the ports in turn (i mod nports, j mod nports), so subscribers and publishes
 * are spread evenly over the nodes of a cluster. */
int bench_port(const bench_t *b, long idx);
const struct sockaddr_in *bench_addr(const bench_t *b, long idx);

/* Epoll registration helper: EPOLLIN, plus EPOLLOUT when want_out. */
int bench_watch(bench_t *b, int fd, void *ptr, bool want_out, bool add);

#endif
