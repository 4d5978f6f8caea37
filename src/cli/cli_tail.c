/* herald tail: subscribe over the native WebSocket protocol and print every event
 * as one JSON line on stdout. Reconnects with capped exponential backoff and full
 * jitter; each reconnect resubscribes with `since` = the last offset seen per
 * channel (and its epoch), so nothing is missed while the server keeps history. */
#include "cli/cli_client.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "http/url.h"
#include "log.h"
#include "ws/ws_client.h"
#include "ws/ws_codec.h"

#define DEFAULT_WS_URL "ws://127.0.0.1:8080/ws"
#define CONNECT_TIMEOUT_MS 10000
#define BACKOFF_START_MS 250
#define BACKOFF_CAP_MS 30000
#define SLICE_MS 1000          /* longest wait between checks of the signal flag */
#define IDLE_PING_MS 30000     /* silence after which tail asks the server for a pong */
#define IDLE_DEAD_MS 60000     /* silence after which the connection is presumed dead */

/* Outcome of one connection that is not a process exit status. */
#define TAIL_RECONNECT (-1)

/* The one global: a signal handler can reach nothing else. */
static volatile sig_atomic_t stop_requested;

typedef struct chan_state {
    const char *name;          /* borrowed from argv */
    int64_t offset;            /* last offset seen, -1 before any */
    char *epoch;               /* from the last `subscribed`, or NULL */
} chan_state_t;

typedef struct tail {
    url_t url;
    const char *ca_file;       /* wss: CAs trusted instead of the system store, or NULL */
    chan_state_t *chans;
    size_t chan_count;
    uint64_t max_events;       /* 0: no limit */
    uint64_t events;
    int64_t deadline_ms;       /* monotonic; -1: no --timeout */
} tail_t;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ms(void)
{
    return (int64_t)time_mono_ms();
}

/* Milliseconds until --timeout, capped at cap; cap when there is no timeout. */
static int time_left(const tail_t *t, int cap)
{
    if (t->deadline_ms < 0)
        return cap;
    int64_t left = t->deadline_ms - now_ms();
    return left <= 0 ? 0 : left < cap ? (int)left : cap;
}

/* A log line with one JSON value as its field. */
static void log_json(int level, const char *msg, const char *key, const json_t *value)
{
    if (!log_enabled(level))
        return;
    char *text = json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    log_msg_json(level, msg, key, text, NULL);
    free(text);
}

static chan_state_t *find_chan(tail_t *t, const char *name)
{
    for (size_t i = 0; i < t->chan_count; i++)
        if (strcmp(t->chans[i].name, name) == 0)
            return &t->chans[i];
    return NULL;
}

/* {"type":"subscribe","channels":[...],"since":{ch: offset | {offset, epoch}}} */
static char *subscribe_message(const tail_t *t)
{
    json_t *msg = json_object(), *channels = json_array(), *since = json_object();
    for (size_t i = 0; i < t->chan_count; i++) {
        const chan_state_t *c = &t->chans[i];
        json_array_append_new(channels, json_string(c->name));
        if (c->offset < 0)
            continue;
        if (c->epoch)
            json_object_set_new(since, c->name, json_pack("{s:I,s:s}", "offset", (json_int_t)c->offset,
                                                          "epoch", c->epoch));
        else
            json_object_set_new(since, c->name, json_integer(c->offset));
    }
    json_object_set_new(msg, "type", json_string("subscribe"));
    json_object_set_new(msg, "channels", channels);
    if (json_object_size(since))
        json_object_set(msg, "since", since);
    json_decref(since);
    char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(msg);
    return s;
}

/* The server's report on the subscription: remember each channel's position and
 * epoch. A channel subscribed without since continues from the offset reported
 * here, as does one whose history was lost (recovered: false), which is worth a
 * warning: events may have been missed. */
static void on_subscribed(tail_t *t, json_t *data)
{
    json_t *offsets = json_object_get(data, "offsets"), *epochs = json_object_get(data, "epochs");
    json_t *recovered = json_object_get(data, "recovered");
    for (size_t i = 0; i < t->chan_count; i++) {
        chan_state_t *c = &t->chans[i];
        json_t *off = json_object_get(offsets, c->name);
        const char *epoch = json_string_value(json_object_get(epochs, c->name));
        bool lost = json_is_false(json_object_get(recovered, c->name));
        if (json_is_integer(off) && (c->offset < 0 || lost))
            c->offset = json_integer_value(off);
        if (epoch) {
            free(c->epoch);
            c->epoch = strdup(epoch);
        }
        if (lost)
            log_msg(LOG_WARN, "history not recovered, events may have been missed",
                    "channel", c->name, NULL);
    }
}

/* Prints the envelope as received; a server could send it over several lines,
 * and then only a compact re-encoding keeps it one line. */
static void print_event(const char *text, size_t len, json_t *j)
{
    if (memchr(text, '\n', len) || memchr(text, '\r', len)) {
        json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    } else {
        fwrite(text, 1, len, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
}

/* Handles one text message. Returns true when --max-events is reached. */
static bool on_text(tail_t *t, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(j)) {
        log_msg(LOG_WARN, "message is not a JSON object", "error", jerr.text, NULL);
        json_decref(j);
        return false;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *channel = json_string_value(json_object_get(j, "channel"));
    json_t *offset = json_object_get(j, "offset");
    bool done = false;
    if (channel && json_is_integer(offset)) {   /* SPEC 9.1: only events have an offset */
        print_event(text, len, j);
        chan_state_t *c = find_chan(t, channel);
        if (c && json_integer_value(offset) > c->offset)
            c->offset = json_integer_value(offset);
        done = t->max_events && ++t->events >= t->max_events;
    } else if (type && strcmp(type, "error") == 0) {
        log_json(LOG_ERROR, "server error", "message", j);
    } else {
        if (type && strcmp(type, "subscribed") == 0)
            on_subscribed(t, json_object_get(j, "data"));
        log_json(LOG_DEBUG, "control", "message", j);   /* shown with --verbose */
    }
    json_decref(j);
    return done;
}

/* Ends a connection the client chose to end: close 1000, then free it. */
static int finish(ws_client_t *c, int exit_code)
{
    ws_client_close(c, WS_CLOSE_NORMAL);
    ws_client_destroy(c);
    return exit_code;
}

/* Reads until the connection ends. Returns an exit status or TAIL_RECONNECT. */
static int pump(tail_t *t, ws_client_t *c)
{
    int64_t last_rx = now_ms();
    bool pinged = false;
    for (;;) {
        if (stop_requested)
            return finish(c, 0);
        if (t->deadline_ms >= 0 && now_ms() >= t->deadline_ms)
            return finish(c, 2);
        int64_t idle = now_ms() - last_rx;
        if (idle >= IDLE_DEAD_MS) {
            log_msg(LOG_WARN, "no answer from the server, reconnecting", NULL);
            ws_client_destroy(c);
            return TAIL_RECONNECT;
        }
        if (idle >= IDLE_PING_MS && !pinged) {
            static const char ping[] = "{\"type\":\"ping\"}";
            ws_client_send_text(c, ping, sizeof(ping) - 1);   /* a failure shows in recv */
            pinged = true;
        }
        ws_client_msg_t m;
        int rc = ws_client_recv(c, time_left(t, SLICE_MS), &m);
        if (rc == HERALD_EAGAIN || rc == HERALD_ESTOP)
            continue;
        if (rc < 0) {
            log_msg(LOG_WARN, "connection lost", "error", err_str(rc), NULL);
            ws_client_destroy(c);
            return TAIL_RECONNECT;
        }
        last_rx = now_ms();
        pinged = false;
        if (m.opcode == WS_OP_CLOSE) {
            bool fatal = m.close_code == WS_CLOSE_UNAUTHORIZED || m.close_code == WS_CLOSE_DISCONNECTED;
            json_t *why = json_pack("{s:i,s:s%}", "code", (int)m.close_code, "reason", m.data, m.len);
            log_json(fatal ? LOG_ERROR : LOG_WARN, "server closed the connection", "close", why);
            json_decref(why);
            ws_client_destroy(c);
            return fatal ? 1 : TAIL_RECONNECT;
        }
        if (on_text(t, m.data, m.len))
            return finish(c, 0);
    }
}

/* One connection: connect, subscribe, pump. *connected tells whether the upgrade
 * succeeded (which resets the backoff). Returns an exit status or TAIL_RECONNECT. */
static int run_connection(tail_t *t, bool *connected)
{
    *connected = false;
    int timeout = time_left(t, CONNECT_TIMEOUT_MS);
    if (timeout == 0)
        return 2;
    ws_client_options_t opt = { .timeout_ms = timeout, .stop = &stop_requested, .ca_file = t->ca_file };
    ws_client_t *c;
    char err[256];
    int rc = ws_client_connect(&t->url, &opt, &c, err, sizeof(err));
    if (rc == HERALD_ESTOP || (rc < 0 && stop_requested))
        return 0;
    if (rc < 0) {
        /* no retry can fix a bad URL or CA file (HERALD_EINVAL), nor a refused
         * credential or a server certificate that does not verify (HERALD_EUNAUTH) */
        bool fatal = rc == HERALD_EINVAL || rc == HERALD_EUNAUTH;
        bool untrusted = rc == HERALD_EUNAUTH && strstr(err, "certificate verify failed") && !t->ca_file;
        log_msg(fatal ? LOG_ERROR : LOG_WARN, "cannot connect", "error", err,
                untrusted ? "hint" : NULL, "a private CA can be trusted with HERALD_CA_FILE or --ca-file", NULL);
        return fatal ? 1 : TAIL_RECONNECT;
    }
    *connected = true;
    char *sub = subscribe_message(t);
    if (!sub) {
        ws_client_destroy(c);
        return 1;
    }
    /* A failed send is not handled here: the server may already have said why
     * (an error, then close 4001, can arrive with the 101), and pump() reads that
     * first, then the connection's error. */
    ws_client_send_text(c, sub, strlen(sub));
    free(sub);
    return pump(t, c);
}

/* Full jitter (uniform in [0, min(cap, start * 2^attempt)]): many clients dropped
 * by one server restart do not come back in step. */
static int backoff_ms(unsigned attempt)
{
    int64_t ceiling = BACKOFF_START_MS;
    for (unsigned i = 0; i < attempt && ceiling < BACKOFF_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > BACKOFF_CAP_MS)
        ceiling = BACKOFF_CAP_MS;
    return (int)(rand_u64() % (uint64_t)(ceiling + 1));
}

/* Sleeps ms, woken early by a signal or --timeout. Returns an exit status when one
 * of them ended the wait, else TAIL_RECONNECT. */
static int pause_ms(const tail_t *t, int ms)
{
    int64_t until = now_ms() + ms;
    for (;;) {
        if (stop_requested)
            return 0;
        int left = time_left(t, SLICE_MS);
        if (left == 0)
            return 2;
        int64_t rest = until - now_ms();
        if (rest <= 0)
            return TAIL_RECONNECT;
        poll(NULL, 0, rest < left ? (int)rest : left);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: herald tail [--url ws[s]://HOST:PORT/ws] [--token T] [--since N] [--verbose]\n"
            "                   [--max-events N] [--timeout S] [--ca-file F] CHANNEL...\n"
            "  --url U          server, ws:// or wss:// (env HERALD_WS_URL, default " DEFAULT_WS_URL ")\n"
            "  --ca-file F      wss: trust the CAs in PEM file F instead of the system store\n"
            "                   (env HERALD_CA_FILE); the certificate is always verified\n"
            "  --token T        access token or JWT, sent as ?token=\n"
            "  --since N        start after offset N on every channel\n"
            "  --verbose        log control messages (connected, subscribed, pong) on stderr\n"
            "  --max-events N   exit 0 after N events\n"
            "  --timeout S      exit 2 after S seconds\n"
            "Events go to stdout, one JSON line each. Exit: 0 done or interrupted, 1 error\n"
            "(including a refused token), 2 timeout.\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

/* Fills t from the command line. Returns -1 to go on, else an exit status. */
static int parse_args(tail_t *t, int argc, char **argv)
{
    static const struct option opts[] = {
        { "url", required_argument, NULL, 'u' }, { "token", required_argument, NULL, 't' },
        { "since", required_argument, NULL, 's' }, { "verbose", no_argument, NULL, 'v' },
        { "max-events", required_argument, NULL, 'n' }, { "timeout", required_argument, NULL, 'T' },
        { "ca-file", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *url_s = getenv("HERALD_WS_URL"), *token = NULL, *ca_file = getenv("HERALD_CA_FILE");
    uint64_t since = 0;
    bool has_since = false;
    double timeout_s = -1;
    optind = 0;   /* glibc: 0 also resets getopt's internal state */
    int idx = 0;
    for (int c; (c = getopt_long(argc, argv, "hv", opts, &idx)) != -1;) {
        bool ok = true;
        char *end;
        switch (c) {
        case 'u': url_s = optarg; break;
        case 't': token = optarg; break;
        case 'c': ca_file = optarg; break;
        case 's': ok = parse_u64(optarg, &since) && since <= INT64_MAX; has_since = true; break;
        case 'v': log_set_level("debug"); break;
        case 'n': ok = parse_u64(optarg, &t->max_events) && t->max_events > 0; break;
        case 'T': timeout_s = strtod(optarg, &end); ok = end != optarg && !*end && timeout_s > 0; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
        if (!ok) {
            fprintf(stderr, "herald tail: bad value for --%s: '%s'\n", opts[idx].name, optarg);
            return 1;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 1;
    }
    if (url_parse(url_s && *url_s ? url_s : DEFAULT_WS_URL, &t->url) < 0 ||
        (token && url_query_append(&t->url, "token", token) < 0)) {
        fprintf(stderr, "herald tail: bad or too long --url '%s'\n", url_s && *url_s ? url_s : DEFAULT_WS_URL);
        return 1;
    }
    t->ca_file = ca_file && *ca_file ? ca_file : NULL;
    t->deadline_ms = timeout_s > 0 ? now_ms() + (int64_t)(timeout_s * 1000) : -1;
    t->chan_count = (size_t)(argc - optind);
    t->chans = calloc(t->chan_count, sizeof(*t->chans));
    if (!t->chans)
        return 1;
    for (size_t i = 0; i < t->chan_count; i++) {
        t->chans[i] = (chan_state_t){ .name = argv[optind + (int)i], .offset = has_since ? (int64_t)since : -1 };
        json_t *probe = json_string(t->chans[i].name);
        json_decref(probe);
        if (!probe || !*t->chans[i].name) {
            fprintf(stderr, "herald tail: channel names must be non-empty UTF-8\n");
            return 1;
        }
    }
    return -1;
}

int cli_tail(int argc, char **argv)
{
    tail_t t = { .deadline_ms = -1 };
    int result = parse_args(&t, argc, argv);
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
    sigemptyset(&sa.sa_mask);   /* no SA_RESTART: a signal must cut a poll() short */
    stop_requested = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* attempts since the last successful upgrade; bounded by --timeout, a signal or
     * a fatal close, as a tail is meant to run until stopped */
    for (unsigned attempt = 0; result < 0;) {
        bool connected;
        result = run_connection(&t, &connected);
        if (result != TAIL_RECONNECT)
            break;
        if (connected)
            attempt = 0;
        int delay = backoff_ms(attempt++);
        char in_ms[16];
        snprintf(in_ms, sizeof(in_ms), "%d", delay);
        log_msg_json(LOG_INFO, "reconnecting", "in_ms", in_ms, NULL);
        result = pause_ms(&t, delay);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    for (size_t i = 0; i < t.chan_count; i++)
        free(t.chans[i].epoch);
    free(t.chans);
    return result;
}
