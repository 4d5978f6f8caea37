/* herald publish: one POST /api/publish over a blocking ws_stream (TCP, or TLS for
 * https://). The response is parsed with http_parser, which gives Content-Length,
 * chunked and close-delimited bodies for free. */
#include "cli/cli_client.h"

#include <getopt.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "http/url.h"
#include "ws/ws_client.h"

#define PUBLISH_TIMEOUT_MS 10000
#define MAX_DATA_BYTES (16u << 20)      /* the server's body limit is far lower */
#define MAX_RESPONSE_BYTES (16u << 20)
#define DEFAULT_URL "http://127.0.0.1:8080"

typedef struct reply {
    char *body;
    size_t len, cap;
    bool complete;
} reply_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: herald publish [--url U] [--api-key K] [--ca-file F] CHANNEL EVENT [DATA|-]\n"
            "  DATA is JSON text (a string needs quotes: '\"hi\"'); '-' or none reads stdin.\n"
            "  --url U       server, http:// or https:// (env HERALD_URL, default " DEFAULT_URL ")\n"
            "  --api-key K   sent as Authorization: Bearer (env HERALD_API_KEY)\n"
            "  --ca-file F   https: trust the CAs in PEM file F instead of the system store\n"
            "                (env HERALD_CA_FILE); the certificate is always verified\n"
            "Options come before CHANNEL, so DATA may start with '-' (e.g. -5).\n");
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* Grows *buf to hold at least need bytes (+1 for a NUL). */
static bool reserve(char **buf, size_t *cap, size_t need)
{
    if (need + 1 <= *cap)
        return true;
    size_t n = *cap ? *cap : 4096;
    while (n < need + 1)
        n *= 2;
    char *p = realloc(*buf, n);
    if (!p)
        return false;
    *buf = p;
    *cap = n;
    return true;
}

static char *read_stdin(size_t *len)
{
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len >= MAX_DATA_BYTES || !reserve(&buf, &cap, *len + 65536)) {
            fprintf(stderr, "herald publish: DATA on stdin is over %u bytes\n", MAX_DATA_BYTES);
            free(buf);
            return NULL;
        }
        size_t n = fread(buf + *len, 1, 65536, stdin);
        *len += n;
        if (n == 0)
            break;
    }
    if (ferror(stdin)) {
        perror("herald publish: reading stdin");
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

/* The request body. DATA is validated with jansson but sent as written, so numbers
 * keep their exact text; channel and event are encoded by jansson. */
static char *build_body(const char *channel, const char *event, const char *data, size_t data_len)
{
    json_error_t jerr;
    /* INT_AS_REAL: an integer past 64 bits is still valid JSON, and it is sent as written */
    json_t *parsed = json_loadb(data, data_len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!parsed) {
        fprintf(stderr, "herald publish: DATA is not valid JSON (%s, line %d column %d); "
                "to send a string, quote it: '\"text\"'\n", jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    json_decref(parsed);
    while (data_len > 0 && strchr(" \t\r\n", data[data_len - 1]))   /* echo's newline */
        data_len--;
    json_t *ch = json_string(channel), *ev = json_string(event);
    char *ch_s = ch ? json_dumps(ch, JSON_ENCODE_ANY) : NULL;
    char *ev_s = ev ? json_dumps(ev, JSON_ENCODE_ANY) : NULL;
    char *body = NULL;
    if (!ch_s || !ev_s)
        fprintf(stderr, "herald publish: CHANNEL and EVENT must be UTF-8\n");
    else if (asprintf(&body, "{\"channel\":%s,\"event\":%s,\"data\":%.*s}", ch_s, ev_s,
                      (int)data_len, data) < 0)
        body = NULL;
    json_decref(ch);
    json_decref(ev);
    free(ch_s);
    free(ev_s);
    return body;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    reply_t *r = p->data;
    if (r->len + len > MAX_RESPONSE_BYTES || !reserve(&r->body, &r->cap, r->len + len))
        return 1;
    memcpy(r->body + r->len, at, len);
    r->len += len;
    r->body[r->len] = '\0';
    return 0;
}

static int on_complete(http_parser *p)
{
    ((reply_t *)p->data)->complete = true;
    return 0;
}

/* Sends the request and reads the whole response. Returns the HTTP status, or -1
 * after printing why. */
static int exchange(const url_t *u, const char *api_key, const char *ca_file, const char *body, reply_t *r)
{
    char err[256], host[URL_MAX_HOST + 16];
    ws_stream_t s;
    int open_rc = ws_stream_open_ca(&s, u, PUBLISH_TIMEOUT_MS, NULL, ca_file, err, sizeof(err));
    if (open_rc < 0) {
        bool untrusted = open_rc == HERALD_EUNAUTH && !ca_file;
        fprintf(stderr, "herald publish: %s%s\n", err,
                untrusted ? " (a private CA can be trusted with HERALD_CA_FILE or --ca-file)" : "");
        return -1;
    }
    url_host_header(u, host, sizeof(host));
    char *req = NULL;
    int n = asprintf(&req,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: herald\r\nAccept: application/json\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
                     "%s%s%s\r\n%s",
                     u->target, host, strlen(body), api_key ? "Authorization: Bearer " : "",
                     api_key ? api_key : "", api_key ? "\r\n" : "", body);
    int rc = HERALD_ENOMEM;
    if (n >= 0) {
        rc = ws_stream_write(&s, req, (size_t)n);
        free(req);
    }
    /* a server refusing a large body (413) may answer and close before reading it all */
    if (rc == HERALD_ECLOSED)
        rc = 0;
    http_parser p;
    http_parser_settings st;
    http_parser_init(&p, HTTP_RESPONSE);
    http_parser_settings_init(&st);
    st.on_body = on_body;
    st.on_message_complete = on_complete;
    p.data = r;
    char buf[16384];
    while (rc == 0 && !r->complete) {
        long got = ws_stream_read(&s, buf, sizeof(buf), PUBLISH_TIMEOUT_MS);
        if (got == HERALD_ECLOSED) {
            http_parser_execute(&p, &st, NULL, 0);   /* end of a close-delimited body */
            break;
        }
        if (got < 0) {
            rc = (int)got;
            break;
        }
        size_t used = http_parser_execute(&p, &st, buf, (size_t)got);
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != (size_t)got) {
            fprintf(stderr, "herald publish: bad HTTP response: %s\n",
                    http_errno_description(HTTP_PARSER_ERRNO(&p)));
            ws_stream_close(&s);
            return -1;
        }
    }
    ws_stream_close(&s);
    if (rc < 0 || !r->complete) {
        fprintf(stderr, "herald publish: %s\n", rc == HERALD_EAGAIN ? "no answer in time"
                : rc < 0 ? err_str(rc) : "the server closed the connection before a full answer");
        return -1;
    }
    return p.status_code;
}

/* The server's errors are {"error","message"}; anything else is shown as it came. */
static void print_error(int status, const reply_t *r)
{
    json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(j, "error"));
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (code || msg)
        fprintf(stderr, "herald publish: HTTP %d %s: %s\n", status, code ? code : "error", msg ? msg : "");
    else
        fprintf(stderr, "herald publish: HTTP %d: %.*s\n", status, r->len > 500 ? 500 : (int)r->len,
                r->body ? r->body : "");
    json_decref(j);
}

int cli_publish(int argc, char **argv)
{
    static const struct option opts[] = {
        { "url", required_argument, NULL, 'u' },
        { "api-key", required_argument, NULL, 'k' },
        { "ca-file", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *url_s = env_or("HERALD_URL", DEFAULT_URL), *api_key = env_or("HERALD_API_KEY", NULL);
    const char *ca_file = env_or("HERALD_CA_FILE", NULL);
    optind = 0;   /* glibc: 0 also resets getopt's internal state */
    for (int c; (c = getopt_long(argc, argv, "+h", opts, NULL)) != -1;) {
        if (c == 'u')
            url_s = optarg;
        else if (c == 'k')
            api_key = optarg;
        else if (c == 'c')
            ca_file = *optarg ? optarg : NULL;
        else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 1;
        }
    }
    int rest = argc - optind;
    if (rest < 2 || rest > 3) {
        usage(stderr);
        return 1;
    }
    url_t u;
    if (url_parse(url_s, &u) < 0 || (u.scheme != URL_HTTP && u.scheme != URL_HTTPS)) {
        fprintf(stderr, "herald publish: --url needs an http:// or https:// URL, got '%s'\n", url_s);
        return 1;
    }
    if (url_path_join(&u, "api/publish") < 0 || (api_key && strpbrk(api_key, "\r\n"))) {
        fprintf(stderr, "herald publish: the URL is too long or the API key has a line break\n");
        return 1;
    }
    const char *channel = argv[optind], *event = argv[optind + 1];
    const char *data_arg = rest == 3 ? argv[optind + 2] : "-";
    size_t data_len = strlen(data_arg);
    char *stdin_data = strcmp(data_arg, "-") == 0 ? read_stdin(&data_len) : NULL;
    if (strcmp(data_arg, "-") == 0 && !stdin_data)
        return 1;
    char *body = build_body(channel, event, stdin_data ? stdin_data : data_arg, data_len);
    free(stdin_data);
    if (!body)
        return 1;
    reply_t r = { 0 };
    int status = exchange(&u, api_key, ca_file, body, &r);
    free(body);
    int exit_code = 1;
    if (status >= 200 && status < 300) {
        if (r.len) {
            fwrite(r.body, 1, r.len, stdout);
            if (r.body[r.len - 1] != '\n')
                putchar('\n');
        }
        exit_code = fflush(stdout) == 0 ? 0 : 1;
    } else if (status > 0) {
        print_error(status, &r);
    }
    free(r.body);
    return exit_code;
}
