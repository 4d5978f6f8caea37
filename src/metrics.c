#include "metrics.h"

const char *const metrics_proto_names[PROTO_COUNT] = {"ws", "socketio", "sse"};
const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25};

void metrics_observe_publish(metrics_t *m, uint64_t ns)
{
    atomic_fetch_add_explicit(&m->publish_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->publish_ns_sum, ns, memory_order_relaxed);
    double s = (double)ns / 1e9;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        if (s <= metrics_latency_bounds[i]) {
            atomic_fetch_add_explicit(&m->publish_buckets[i], 1, memory_order_relaxed);
            break;
        }
    }
}

long metrics_connections_total(metrics_t *m)
{
    long t = 0;
    for (int i = 0; i < PROTO_COUNT; i++) t += atomic_load_explicit(&m->connections[i], memory_order_relaxed);
    return t;
}

#define LOAD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

int metrics_render(metrics_t *m, long channels, buf_t *b)
{
    int rc = 0;
    rc |= buf_append_str(b, "# HELP herald_connections Open client connections by protocol.\n"
                            "# TYPE herald_connections gauge\n");
    for (int i = 0; i < PROTO_COUNT; i++)
        rc |= buf_printf(b, "herald_connections{protocol=\"%s\"} %ld\n", metrics_proto_names[i],
                         atomic_load_explicit(&m->connections[i], memory_order_relaxed));
    rc |= buf_printf(b, "# HELP herald_channels Channels with at least one subscriber on this node.\n"
                        "# TYPE herald_channels gauge\nherald_channels %ld\n", channels);
    rc |= buf_printf(b, "# HELP herald_messages_published_total Events accepted for publishing.\n"
                        "# TYPE herald_messages_published_total counter\n"
                        "herald_messages_published_total %llu\n", LOAD(m->published));
    rc |= buf_printf(b, "# HELP herald_messages_delivered_total Event frames queued to clients.\n"
                        "# TYPE herald_messages_delivered_total counter\n"
                        "herald_messages_delivered_total %llu\n", LOAD(m->delivered));
    rc |= buf_printf(b, "# HELP herald_messages_dropped_total Event frames discarded (slow consumers).\n"
                        "# TYPE herald_messages_dropped_total counter\n"
                        "herald_messages_dropped_total %llu\n", LOAD(m->dropped));
    rc |= buf_printf(b, "# HELP herald_slow_consumers_total Connections closed with 4008.\n"
                        "# TYPE herald_slow_consumers_total counter\n"
                        "herald_slow_consumers_total %llu\n", LOAD(m->slow_consumers));
    rc |= buf_printf(b, "# HELP herald_http_requests_total HTTP requests handled.\n"
                        "# TYPE herald_http_requests_total counter\n"
                        "herald_http_requests_total %llu\n", LOAD(m->http_requests));
    rc |= buf_append_str(b, "# HELP herald_publish_duration_seconds Time to sequence and dispatch a publish.\n"
                            "# TYPE herald_publish_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cum += LOAD(m->publish_buckets[i]);
        rc |= buf_printf(b, "herald_publish_duration_seconds_bucket{le=\"%g\"} %llu\n",
                         metrics_latency_bounds[i], cum);
    }
    rc |= buf_printf(b, "herald_publish_duration_seconds_bucket{le=\"+Inf\"} %llu\n", LOAD(m->publish_count));
    rc |= buf_printf(b, "herald_publish_duration_seconds_sum %.9f\n", (double)LOAD(m->publish_ns_sum) / 1e9);
    rc |= buf_printf(b, "herald_publish_duration_seconds_count %llu\n", LOAD(m->publish_count));
    return rc ? -3 : 0;
}
