/* metrics: the process-wide counters behind /stats and /metrics.
 *
 * Plain relaxed atomics: workers add to them on their own threads and the API
 * reads them on any thread. Hot-path counters (delivered) are added once per
 * event per worker, not once per receiver. Owned by the server. */
#ifndef HERALD_METRICS_H
#define HERALD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/util.h"

enum metrics_proto { PROTO_WS = 0, PROTO_SOCKETIO, PROTO_SSE, PROTO_COUNT };
extern const char *const metrics_proto_names[PROTO_COUNT];

#define METRICS_LATENCY_BUCKETS 12
extern const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS];   /* seconds */

typedef struct metrics {
    atomic_long connections[PROTO_COUNT];       /* open subscriber connections, by protocol */
    atomic_ulong published;
    atomic_ulong delivered;
    atomic_ulong dropped;                       /* events discarded for a slow consumer */
    atomic_ulong slow_consumers;
    atomic_ulong http_requests;
    atomic_ulong publish_count;                 /* histogram of publish handling time */
    atomic_ulong publish_ns_sum;
    atomic_ulong publish_buckets[METRICS_LATENCY_BUCKETS];
} metrics_t;

void metrics_observe_publish(metrics_t *m, uint64_t ns);
long metrics_connections_total(metrics_t *m);

/* Appends the Prometheus text exposition of m (plus channels gauge) to b. */
int metrics_render(metrics_t *m, long channels, buf_t *b);

#endif
