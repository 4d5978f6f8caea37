/* httpresp: frames HTTP/1.1 responses on a pipelined keep-alive connection, without
 * I/O. It only needs to know where each response ends and its status: bodies are
 * skipped, never interpreted. Content-Length and chunked bodies are understood.
 *
 * Owns nothing; borrows the caller's buffer. Pure functions, any thread. */
#ifndef BENCH_HTTPRESP_H
#define BENCH_HTTPRESP_H

#include <stddef.h>
#include <stdbool.h>

typedef struct httpresp {
    int status;
    bool close;          /* "Connection: close": nothing more will come on this socket */
} httpresp_t;

/* Parses the first complete response in buf[0..len). Returns its total length
 * (headers and body), HERALD_NEED_MORE, or HERALD_EPROTO. A response whose body is
 * delimited by the end of the connection is refused (EPROTO): pipelining needs
 * framed responses. */
int httpresp_parse(const char *buf, size_t len, httpresp_t *out);

#endif
