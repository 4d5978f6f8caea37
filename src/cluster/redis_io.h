/* redis_io: hiredis's asynchronous client driven by herald's own event loop.
 *
 * hiredis asks its event library to watch for reading and writing through five
 * hooks (ev.addRead ... ev.cleanup); this module answers them with a loop_io_t on
 * the loop the context was attached to. Also: parsing redis:// URLs.
 *
 * Owns: the watcher embedded in redis_io_t (the context belongs to hiredis, which
 * frees it after its disconnect callback). Loop thread only. */
#ifndef HERALD_REDIS_IO_H
#define HERALD_REDIS_IO_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"

typedef struct redis_io {
    loop_t *loop;
    loop_io_t io;
    bool added;                /* io is registered with the loop */
    redisAsyncContext *ac;     /* NULL once hiredis has cleaned up */
} redis_io_t;

/* Attaches ac to loop through rio (which must outlive ac). Returns 0 or -1. */
int redis_io_attach(redis_io_t *rio, loop_t *loop, redisAsyncContext *ac);

/* A parsed redis://[[user]:password@]host[:port][/db] URL. Strings are owned. */
typedef struct redis_url {
    char *host;
    int port;
    char *user;       /* NULL: no ACL user (AUTH password alone) */
    char *password;   /* NULL: no AUTH */
    int db;
} redis_url_t;

/* Returns 0, or -1 with why filled (rediss:// is refused: no TLS in this hiredis). */
int redis_url_parse(const char *url, redis_url_t *out, char *why, size_t why_len);
void redis_url_free(redis_url_t *u);

#endif
