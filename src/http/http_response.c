#include "http/http_response.h"
#include "core/util.h"
#include "http/http_conn.h"

#include <stdio.h>
#include <string.h>

const char *http_status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

void http_set_close(conn_t *c) { c->http_close = true; }

void http_respond(conn_t *c, int status, const char *content_type, const char *body, size_t len,
                  const char *extra_headers)
{
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nServer: herald\r\nContent-Length: %zu\r\n%s%s%s%s%s\r\n", status,
                      http_status_text(status), len, content_type ? "Content-Type: " : "",
                      content_type ? content_type : "", content_type ? "\r\n" : "",
                      c->http_close ? "Connection: close\r\n" : "", extra_headers ? extra_headers : "");
    if (hl < 0 || (size_t)hl >= sizeof head) {
        conn_close(c);
        return;
    }
    frame_t *f = frame_new((size_t)hl + len);
    if (!f) {
        conn_close(c);
        return;
    }
    memcpy(f->data, head, (size_t)hl);
    if (len) memcpy(f->data + hl, body, len);
    http_conn_send_response(c, f);
}

void http_respond_json_text(conn_t *c, int status, const char *json, size_t len)
{
    http_respond(c, status, "application/json", json, len, NULL);
}

void http_respond_json(conn_t *c, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) {
        http_respond_error(c, 500, "internal", "could not encode the response");
        return;
    }
    http_respond_json_text(c, status, s, strlen(s));
    free(s);
}

void http_respond_error(conn_t *c, int status, const char *code, const char *message)
{
    http_respond_error_with(c, status, code, message, NULL);
}

void http_respond_error_with(conn_t *c, int status, const char *code, const char *message, const char *extra_headers)
{
    buf_t b = {0};
    int rc = buf_append_str(&b, "{\"error\":");
    rc |= buf_append_json_str(&b, code, strlen(code));
    rc |= buf_append_str(&b, ",\"message\":");
    rc |= buf_append_json_str(&b, message, strlen(message));
    rc |= buf_append_str(&b, "}");
    if (rc) {
        buf_free(&b);
        conn_close(c);
        return;
    }
    http_respond(c, status, "application/json", b.data, b.len, extra_headers);
    buf_free(&b);
}
