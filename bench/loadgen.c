/* loadgen: herald's load generator. One thread, one epoll loop: N WebSocket
 * subscribers opened with a bounded number of handshakes in flight, and a few
 * pipelined HTTP/1.1 publishers. Every event is numbered and timestamped, so each
 * delivery to each subscriber is accounted for (loss, duplicates, misrouting,
 * order) and timed. Prints one JSON line of results on stdout; exits 1 when
 * anything was lost, refused or timed out, 2 on a usage error.
 *
 * Phases: connect -> settle -> run (publish) -> drain -> report, each bounded by
 * the one --timeout deadline. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bench.h"
#include "core/err.h"
#include "pub.h"
#include "sub.h"

#define RBUF_CAP (2u << 20)     /* a whole 1 MB frame plus what was carried over */
#define MAX_EVENTS 256          /* per wait: small batches keep the publish schedule on time */

enum phase { PH_CONNECT, PH_SETTLE, PH_RUN, PH_DRAIN, PH_DONE };

typedef struct ltimer {
    int kind;                   /* BENCH_KIND_TIMER */
    int fd;
} ltimer_t;

typedef struct report {
    long rss_before_kb, rss_after_kb;
    double cpu_before_s, cpu_after_s;
    double loadgen_cpu_s;
    double self_cpu_run_s;      /* the load generator's CPU time when publishing began */
    uint64_t t_start, t_connected, t_run, t_done;
    uint64_t expected;
    bool timed_out;
} report_t;

/* ---- helpers shared through bench.h ---- */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_error(bench_t *b, const char *fmt, ...)
{
    if (b->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->error, sizeof b->error, fmt, ap);
    va_end(ap);
}

int bench_channel(const bench_t *b, long idx, char *out, size_t cap)
{
    const bench_opts_t *o = b->opt;
    if (o->workload == BENCH_FANOUT || o->workload == BENCH_LATENCY)
        return snprintf(out, cap, "%s", o->prefix);
    return snprintf(out, cap, "%s:%ld", o->prefix, idx);
}

int bench_port(const bench_t *b, long idx)
{
    return b->opt->ports[idx % b->opt->nports];
}

const struct sockaddr_in *bench_addr(const bench_t *b, long idx)
{
    return &b->addrs[idx % b->opt->nports];
}

int bench_watch(bench_t *b, int fd, void *ptr, bool want_out, bool add)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.ptr = ptr};
    return epoll_ctl(b->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

/* ---- the server process, read from /proc ---- */

static long proc_rss_kb(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* utime + stime of every thread of the process, in seconds. */
static double proc_cpu_s(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')');   /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* fields 3.. after ')': state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The sums over every server process (a cluster's nodes and their Redis); -1 when
 * there are none or one cannot be read. */
static long servers_rss_kb(const bench_opts_t *o)
{
    long sum = o->nserver_pids ? 0 : -1;
    for (int i = 0; i < o->nserver_pids && sum >= 0; i++) {
        long kb = proc_rss_kb(o->server_pids[i]);
        sum = kb < 0 ? -1 : sum + kb;
    }
    return sum;
}

static double servers_cpu_s(const bench_opts_t *o)
{
    double sum = o->nserver_pids ? 0 : -1;
    for (int i = 0; i < o->nserver_pids && sum >= 0; i++) {
        double s = proc_cpu_s(o->server_pids[i]);
        sum = s < 0 ? -1 : sum + s;
    }
    return sum;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- options ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: loadgen --port P [options]\n"
        "  --proto native|socketio|nchan   subscriber protocol (default native)\n"
        "  --workload idle|fanout|targeted|latency  (default fanout)\n"
        "  --host A            IPv4 address of the server (default 127.0.0.1)\n"
        "  --port P[,P...]     server port (subscribe and publish); several ports: the\n"
        "                      nodes of a cluster, taken in turn by subscribers and by\n"
        "                      publisher connections\n"
        "  --conns N           subscriber connections (default 1000)\n"
        "  --events M          events to publish, fanout/targeted (default 1000)\n"
        "  --rate R            latency: events per second (default 200)\n"
        "  --duration S        latency: seconds of publishing (default 10)\n"
        "  --pub-conns K       publisher connections (default 4)\n"
        "  --pipeline D        requests in flight per publisher connection (default 32)\n"
        "  --handshakes H      subscriber handshakes in flight (default 200)\n"
        "  --timeout S         bound on the whole run (default 120)\n"
        "  --idle-wait S       idle: seconds to hold the connections before measuring (default 3)\n"
        "  --settle S          pause between subscribing and publishing (default 0.2)\n"
        "  --drain S           after the last ack, wait this long without deliveries (default 5)\n"
        "  --server-pid PID[,PID...]  read the server's RSS and CPU time from /proc\n"
        "                      (summed over several processes)\n"
        "  --payload-bytes N   padding added to each event's data (default 0)\n"
        "  --prefix NAME       channel name prefix (default bench)\n"
        "  --event NAME        event name (default tick)\n"
        "  --sub-path P        subscriber path (default /ws, /socket.io/?EIO=4&transport=websocket,\n"
        "                      /sub?id= followed by the channel for nchan)\n"
        "  --pub-path P        publish path (default /api/publish, /pub?id= for nchan)\n");
}

static int parse_choice(const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

/* "P1,P2,...": at most max integers, each 1..top. Returns the count, or -1. */
static int parse_int_list(const char *v, int *out, int max, long top)
{
    int n = 0;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (end == v || errno || x <= 0 || x > top || n == max ||
            (*end != ',' && *end != '\0'))
            return -1;
        out[n++] = (int)x;
        if (*end == '\0')
            return n;
        v = end + 1;
    }
}

static int parse_opts(int argc, char **argv, bench_opts_t *o)
{
    static const char *const protos[] = {"native", "socketio", "nchan"};
    static const char *const workloads[] = {"idle", "fanout", "targeted", "latency"};
    enum { O_PROTO = 256, O_WORKLOAD, O_HOST, O_PORT, O_CONNS, O_EVENTS, O_RATE, O_DURATION,
           O_PUBCONNS, O_PIPELINE, O_HANDSHAKES, O_TIMEOUT, O_IDLEWAIT, O_SETTLE, O_DRAIN,
           O_PID, O_PAYLOAD, O_PREFIX, O_EVENT, O_SUBPATH, O_PUBPATH, O_HELP };
    static const struct option lo[] = {
        {"proto", 1, 0, O_PROTO}, {"workload", 1, 0, O_WORKLOAD}, {"host", 1, 0, O_HOST},
        {"port", 1, 0, O_PORT}, {"conns", 1, 0, O_CONNS}, {"events", 1, 0, O_EVENTS},
        {"rate", 1, 0, O_RATE}, {"duration", 1, 0, O_DURATION}, {"pub-conns", 1, 0, O_PUBCONNS},
        {"pipeline", 1, 0, O_PIPELINE}, {"handshakes", 1, 0, O_HANDSHAKES},
        {"timeout", 1, 0, O_TIMEOUT}, {"idle-wait", 1, 0, O_IDLEWAIT}, {"settle", 1, 0, O_SETTLE},
        {"drain", 1, 0, O_DRAIN}, {"server-pid", 1, 0, O_PID}, {"payload-bytes", 1, 0, O_PAYLOAD},
        {"prefix", 1, 0, O_PREFIX}, {"event", 1, 0, O_EVENT}, {"sub-path", 1, 0, O_SUBPATH},
        {"pub-path", 1, 0, O_PUBPATH}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0},
    };
    *o = (bench_opts_t){
        .proto = BENCH_NATIVE, .workload = BENCH_FANOUT, .host = "127.0.0.1",
        .conns = 1000, .events = 1000, .rate = 200, .duration_s = 10, .pub_conns = 4,
        .pipeline = 32, .handshakes = 200, .timeout_s = 120, .idle_wait_s = 3, .drain_s = 5,
        .settle_s = 0.2, .prefix = "bench", .event = "tick",
    };
    bool events_set = false;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_PROTO: o->proto = parse_choice(optarg, protos, 3); break;
        case O_WORKLOAD: o->workload = parse_choice(optarg, workloads, 4); break;
        case O_HOST: o->host = optarg; break;
        case O_PORT: o->nports = parse_int_list(optarg, o->ports, BENCH_MAX_PORTS, 65535); break;
        case O_CONNS: o->conns = atol(optarg); break;
        case O_EVENTS: o->events = atol(optarg); events_set = true; break;
        case O_RATE: o->rate = atof(optarg); break;
        case O_DURATION: o->duration_s = atof(optarg); break;
        case O_PUBCONNS: o->pub_conns = atoi(optarg); break;
        case O_PIPELINE: o->pipeline = atoi(optarg); break;
        case O_HANDSHAKES: o->handshakes = atoi(optarg); break;
        case O_TIMEOUT: o->timeout_s = atof(optarg); break;
        case O_IDLEWAIT: o->idle_wait_s = atof(optarg); break;
        case O_SETTLE: o->settle_s = atof(optarg); break;
        case O_DRAIN: o->drain_s = atof(optarg); break;
        case O_PID:
            o->nserver_pids = parse_int_list(optarg, o->server_pids, BENCH_MAX_PIDS, INT_MAX);
            break;
        case O_PAYLOAD: o->payload_bytes = atoi(optarg); break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_EVENT: o->event = optarg; break;
        case O_SUBPATH: o->sub_path = optarg; break;
        case O_PUBPATH: o->pub_path = optarg; break;
        case O_HELP: usage(stdout); exit(0);
        default: return HERALD_EINVAL;
        }
    }
    const char *bad = NULL;
    if (optind != argc) bad = "unexpected argument";
    else if (o->proto < 0) bad = "--proto must be native, socketio or nchan";
    else if (o->workload < 0) bad = "--workload must be idle, fanout, targeted or latency";
    else if (o->nports <= 0) bad = "--port is required: a port, or up to 16 joined by commas";
    else if (o->nserver_pids < 0) bad = "--server-pid takes up to 16 pids joined by commas";
    else if (o->conns < 1 || o->conns > 1000000) bad = "--conns must be 1..1000000";
    else if (o->pub_conns < 1 || o->pub_conns > 256) bad = "--pub-conns must be 1..256";
    else if (o->pipeline < 1 || o->pipeline > 4096) bad = "--pipeline must be 1..4096";
    else if (o->handshakes < 1) bad = "--handshakes must be positive";
    else if (o->timeout_s <= 0) bad = "--timeout must be positive";
    else if (o->payload_bytes < 0 || o->payload_bytes > 60000) bad = "--payload-bytes must be 0..60000";
    else if (strlen(o->prefix) > 200 || strlen(o->event) > 100) bad = "--prefix or --event too long";
    else if (o->workload == BENCH_LATENCY && (o->rate <= 0 || o->duration_s <= 0))
        bad = "--rate and --duration must be positive";
    if (bad) {
        fprintf(stderr, "loadgen: %s\n", bad);
        return HERALD_EINVAL;
    }
    if (o->workload == BENCH_LATENCY && !events_set)
        o->events = (long)llround(o->rate * o->duration_s);
    if (o->workload == BENCH_IDLE)
        o->events = 0;
    if (o->events < 0 || o->events > 100000000) {
        fprintf(stderr, "loadgen: --events must be 0..100000000\n");
        return HERALD_EINVAL;
    }
    return 0;
}

/* Connections need descriptors on this side too: raise the soft limit to the hard. */
static int raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return HERALD_EIO;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur) {
        fprintf(stderr, "loadgen: needs %ld descriptors, the limit is %llu (raise ulimit -n)\n",
                need, (unsigned long long)rl.rlim_cur);
        return HERALD_ELIMIT;
    }
    return 0;
}

/* ---- the loop ---- */

static bool all_pubs_dead(const bench_t *b)
{
    for (int i = 0; i < b->npubs; i++)
        if (b->pubs[i].state != PUB_DEAD)
            return false;
    return true;
}

/* Events due so far: all of them for the throughput workloads, the schedule's
 * count for the latency workload. */
static long due_events(const bench_t *b, uint64_t now)
{
    if (b->opt->workload != BENCH_LATENCY)
        return b->events_total;
    double due = floor((double)(now - b->t_run_start) * b->opt->rate / 1e9) + 1;
    return due >= (double)b->events_total ? b->events_total : (long)due;
}

static bool pubs_have_room(const bench_t *b)
{
    for (int i = 0; i < b->npubs; i++)
        if (b->pubs[i].state == PUB_OPEN && b->pubs[i].inflight < b->opt->pipeline)
            return true;
    return false;
}

/* Wakes the loop when the next event is due. Not armed while every pipeline is full:
 * a due time already past would fire at once, again and again, until an answer came;
 * the answer wakes the loop by itself. */
static void arm_timer(bench_t *b, ltimer_t *t)
{
    if (b->opt->workload != BENCH_LATENCY || b->next_seq >= b->events_total ||
        !pubs_have_room(b))
        return;
    uint64_t at = b->t_run_start + (uint64_t)((double)b->next_seq * 1e9 / b->opt->rate);
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(at / 1000000000ull),
                                          .tv_nsec = (long)(at % 1000000000ull)}};
    timerfd_settime(t->fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void pump(bench_t *b, ltimer_t *t)
{
    long limit = due_events(b, bench_now_ns());
    /* Start with a different connection each time so a trickle of due events is
     * spread over all of them; any connection with room takes what the others
     * cannot, so one slow connection does not stall the rest. */
    int start = (int)(b->next_seq % b->npubs);
    for (int i = 0; i < b->npubs && b->next_seq < limit; i++)
        pub_fill(b, &b->pubs[(start + i) % b->npubs], limit);
    arm_timer(b, t);
}

static void dispatch(bench_t *b, struct epoll_event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        int kind = *(int *)evs[i].data.ptr;
        if (kind == BENCH_KIND_SUB) {
            sub_on_event(b, evs[i].data.ptr, evs[i].events);
        } else if (kind == BENCH_KIND_PUB) {
            pub_on_event(b, evs[i].data.ptr, evs[i].events);
        } else {
            /* The timer only wakes the loop; the pump after the batch does the work.
             * EAGAIN (nothing to read) is harmless. */
            uint64_t expirations;
            ssize_t rd = read(((ltimer_t *)evs[i].data.ptr)->fd, &expirations, sizeof expirations);
            (void)rd;
        }
    }
}

static uint64_t expected_total(const bench_t *b)
{
    uint64_t sum = 0;
    for (long i = 0; i < b->nsubs; i++)
        if (b->subs[i].state == SUB_READY)
            sum += track_expected(&b->track, i);
    return sum;
}

static void run(bench_t *b, ltimer_t *timer, report_t *r)
{
    const bench_opts_t *o = b->opt;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t deadline = r->t_start + (uint64_t)(o->timeout_s * 1e9);
    uint64_t settle_until = 0, t_answered = 0;
    enum phase ph = PH_CONNECT;

    while (ph != PH_DONE) {
        uint64_t now = bench_now_ns();
        b->now = now;
        if (now >= deadline) {
            r->timed_out = true;
            bench_error(b, "timed out after %.0f s", o->timeout_s);
            break;
        }
        switch (ph) {
        case PH_CONNECT:
            while (b->handshakes_inflight < o->handshakes && b->subs_started < b->nsubs)
                sub_start(b, &b->subs[b->subs_started]);
            /* subs_ready counts every subscriber that got ready, even if it closed since. */
            if (b->subs_ready + b->subs_failed >= b->nsubs) {
                r->t_connected = now;
                double wait = o->workload == BENCH_IDLE ? o->idle_wait_s : o->settle_s;
                settle_until = now + (uint64_t)(wait * 1e9);
                ph = PH_SETTLE;
            }
            break;
        case PH_SETTLE:
            if (now < settle_until)
                break;
            if (o->workload == BENCH_IDLE) {
                r->rss_after_kb = servers_rss_kb(o);
                ph = PH_DONE;
                continue;
            }
            r->expected = expected_total(b);
            r->cpu_before_s = servers_cpu_s(o);
            r->self_cpu_run_s = self_cpu_s();
            r->t_run = now;
            b->t_run_start = now;
            ph = PH_RUN;
            pump(b, timer);
            break;
        case PH_RUN:
            pump(b, timer);
            if (b->acked + b->pub_errors >= b->events_total || all_pubs_dead(b)) {
                if (b->acked + b->pub_errors < b->events_total)
                    bench_error(b, "every publisher connection failed");
                t_answered = now;
                ph = PH_DRAIN;
            }
            break;
        case PH_DRAIN: {
            uint64_t last = b->t_last_delivery > t_answered ? b->t_last_delivery : t_answered;
            if (b->track.unique >= r->expected || now - last > (uint64_t)(o->drain_s * 1e9)) {
                ph = PH_DONE;
                continue;
            }
            break;
        }
        case PH_DONE:
            break;
        }
        int wait_ms = ph == PH_SETTLE ? 1 : 10;
        int n = epoll_wait(b->epfd, evs, MAX_EVENTS, wait_ms);
        if (n < 0 && errno != EINTR) {
            bench_error(b, "epoll_wait: %s", strerror(errno));
            break;
        }
        if (n > 0)
            dispatch(b, evs, n);
    }
    r->t_done = bench_now_ns();
    if (o->workload != BENCH_IDLE) {
        r->cpu_after_s = servers_cpu_s(o);
        r->rss_after_kb = servers_rss_kb(o);
    }
}

/* Share of the publishing phase during which a process was on a CPU: near 1 for
 * the server means it was the bottleneck, as it should be; near 1 for the load
 * generator means the numbers may understate the server. -1 when unknown. */
static double busy(double cpu_s, const report_t *r)
{
    if (cpu_s < 0 || !r->t_run || r->t_done <= r->t_run)
        return -1;
    return cpu_s / ((double)(r->t_done - r->t_run) / 1e9);
}

/* ---- the report ---- */

static void print_ms(const char *name, const hist_t *h, bool last)
{
    printf("\"%s\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f}%s",
           name, hist_quantile(h, 0.50) / 1e6, hist_quantile(h, 0.90) / 1e6,
           hist_quantile(h, 0.99) / 1e6, hist_quantile(h, 0.999) / 1e6, h->max / 1e6,
           h->count ? (double)h->sum / (double)h->count / 1e6 : 0.0, last ? "" : ",");
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static bool report_print(const bench_t *b, const report_t *r)
{
    static const char *const protos[] = {"native", "socketio", "nchan"};
    static const char *const workloads[] = {"idle", "fanout", "targeted", "latency"};
    const bench_opts_t *o = b->opt;
    bool idle = o->workload == BENCH_IDLE;
    uint64_t lost = r->expected > b->track.unique ? r->expected - b->track.unique : 0;
    double connect_s = r->t_connected > r->t_start ? (r->t_connected - r->t_start) / 1e9 : 0;
    double elapsed = 0;
    if (b->t_first_pub && b->t_last_delivery > b->t_first_pub)
        elapsed = (b->t_last_delivery - b->t_first_pub) / 1e9;
    double pub_elapsed = 0;
    if (b->t_first_pub && b->t_last_ack > b->t_first_pub)
        pub_elapsed = (b->t_last_ack - b->t_first_pub) / 1e9;

    bool ok = !r->timed_out && b->subs_failed == 0 && b->subs_lost == 0 && b->subs_ready == b->nsubs;
    if (!idle)
        ok = ok && lost == 0 && b->track.duplicates == 0 && b->track.misrouted == 0 &&
             b->reordered == 0 && b->pub_errors == 0 && b->acked == b->events_total;

    printf("{\"proto\":\"%s\",\"workload\":\"%s\",\"port\":%d,\"ports\":[", protos[o->proto],
           workloads[o->workload], o->ports[0]);
    for (int i = 0; i < o->nports; i++)
        printf("%s%d", i ? "," : "", o->ports[i]);
    printf("],");
    printf("\"conns\":%ld,\"ready\":%ld,\"connect_failures\":%ld,\"disconnects\":%ld,",
           b->nsubs, b->subs_ready, b->subs_failed + (b->nsubs - b->subs_started), b->subs_lost);
    printf("\"connect_s\":%.3f,\"conns_per_s\":%.0f,", connect_s,
           connect_s > 0 ? (double)b->subs_ready / connect_s : 0.0);
    if (idle) {
        printf("\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,\"kb_per_conn\":",
               r->rss_before_kb, r->rss_after_kb);
        if (r->rss_before_kb >= 0 && r->rss_after_kb >= 0 && b->subs_ready > 0)
            printf("%.2f,", (double)(r->rss_after_kb - r->rss_before_kb) / (double)b->subs_ready);
        else
            printf("null,");   /* no --server-pid, or the process is gone */
    } else {
        printf("\"events\":%ld,\"published\":%ld,\"acked\":%ld,\"publish_errors\":%ld,",
               b->events_total, b->next_seq, b->acked, b->pub_errors);
        printf("\"expected\":%llu,\"delivered\":%llu,\"lost\":%llu,\"duplicates\":%llu,"
               "\"misrouted\":%llu,\"unparsed\":%llu,",
               (unsigned long long)r->expected, (unsigned long long)b->track.unique,
               (unsigned long long)lost, (unsigned long long)b->track.duplicates,
               (unsigned long long)b->track.misrouted, (unsigned long long)b->unparsed);
        if (o->proto == BENCH_NATIVE)
            printf("\"reordered\":%llu,", (unsigned long long)b->reordered);
        else
            printf("\"reordered\":null,");   /* no offsets in these protocols */
        printf("\"elapsed_s\":%.3f,\"msgs_per_s\":%.0f,\"publish_per_s\":%.0f,", elapsed,
               elapsed > 0 ? (double)b->track.unique / elapsed : 0.0,
               pub_elapsed > 0 ? (double)b->acked / pub_elapsed : 0.0);
        if (o->workload == BENCH_LATENCY)
            printf("\"rate\":%.1f,\"duration_s\":%.1f,", o->rate, o->duration_s);
        print_ms("latency_ms", &b->latency, false);
        print_ms("ack_ms", &b->ack, false);
        if (r->cpu_after_s >= 0 && r->cpu_before_s >= 0) {
            double cpu = r->cpu_after_s - r->cpu_before_s;
            printf("\"server_cpu_s\":%.2f,\"server_busy\":%.2f,", cpu, busy(cpu, r));
        } else {
            printf("\"server_cpu_s\":null,\"server_busy\":null,");
        }
        double lb = r->t_run ? busy(self_cpu_s() - r->self_cpu_run_s, r) : -1;
        if (lb >= 0)
            printf("\"loadgen_busy\":%.2f,", lb);
        else
            printf("\"loadgen_busy\":null,");
        printf("\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,", r->rss_before_kb, r->rss_after_kb);
    }
    printf("\"wall_s\":%.3f,\"loadgen_cpu_s\":%.2f,\"timed_out\":%s,\"error\":",
           (r->t_done - r->t_start) / 1e9, r->loadgen_cpu_s, r->timed_out ? "true" : "false");
    if (b->error[0])
        json_string(b->error);
    else
        printf("null");
    printf(",\"ok\":%s}\n", ok ? "true" : "false");
    fflush(stdout);
    return ok;
}

int main(int argc, char **argv)
{
    bench_opts_t opt;
    if (parse_opts(argc, argv, &opt) < 0) {
        fprintf(stderr, "loadgen: --help lists the options\n");
        return 2;
    }
    if (raise_nofile(opt.conns + opt.pub_conns + 32) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);

    bench_t b = {.opt = &opt, .rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid()};
    for (int i = 0; i < opt.nports; i++) {
        b.addrs[i].sin_family = AF_INET;
        b.addrs[i].sin_port = htons((uint16_t)opt.ports[i]);
        if (inet_pton(AF_INET, opt.host, &b.addrs[i].sin_addr) != 1) {
            fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
            return 2;
        }
    }
    b.epfd = epoll_create1(EPOLL_CLOEXEC);
    b.rbuf_cap = RBUF_CAP;
    b.rbuf = malloc(b.rbuf_cap);
    b.nsubs = opt.conns;
    b.subs = calloc((size_t)opt.conns, sizeof *b.subs);
    b.npubs = opt.workload == BENCH_IDLE ? 0 : opt.pub_conns;
    b.pubs = calloc((size_t)(b.npubs ? b.npubs : 1), sizeof *b.pubs);
    b.events_total = opt.events;
    hist_init(&b.latency);
    hist_init(&b.ack);
    ltimer_t timer = {.kind = BENCH_KIND_TIMER,
                      .fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)};
    if (b.epfd < 0 || !b.rbuf || !b.subs || !b.pubs || timer.fd < 0 ||
        track_init(&b.track, opt.conns, opt.events, opt.workload == BENCH_TARGETED) < 0) {
        fprintf(stderr, "loadgen: cannot set up: %s\n", strerror(errno));
        return 2;
    }
    for (long i = 0; i < b.nsubs; i++)
        b.subs[i] = (sub_t){.kind = BENCH_KIND_SUB, .fd = -1, .idx = i, .state = SUB_NEW};
    bench_watch(&b, timer.fd, &timer, false, true);

    report_t r = {.t_start = bench_now_ns(), .cpu_before_s = -1, .cpu_after_s = -1};
    double self_before = self_cpu_s();
    r.rss_before_kb = servers_rss_kb(&opt);
    for (int i = 0; i < b.npubs; i++)
        pub_start(&b, &b.pubs[i], i);

    run(&b, &timer, &r);
    r.loadgen_cpu_s = self_cpu_s() - self_before;
    bool ok = report_print(&b, &r);
    if (!ok && b.error[0])
        fprintf(stderr, "loadgen: %s\n", b.error);

    for (long i = 0; i < b.nsubs; i++)
        if (b.subs[i].state != SUB_NEW)
            sub_close(&b, &b.subs[i]);
    for (int i = 0; i < b.npubs; i++)
        pub_close(&b, &b.pubs[i]);
    track_deinit(&b.track);
    close(timer.fd);
    close(b.epfd);
    free(b.subs);
    free(b.pubs);
    free(b.rbuf);
    return ok ? 0 : 1;
}
