#include "log.h"
#include "core/err.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* The one process-wide setting: written before workers start, read after. */
static atomic_int log_threshold = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

int log_set_level(const char *name)
{
    int l = log_parse_level(name);
    if (l < 0) return HERALD_EINVAL;
    atomic_store(&log_threshold, l);
    return 0;
}

bool log_enabled(int level) { return level >= atomic_load(&log_threshold); }

static void log_vwrite(int level, const char *msg, bool raw, va_list ap)
{
    if (!log_enabled(level)) return;
    char ts[ISO_TIME_LEN];
    time_iso8601(time_wall_ms(), ts);
    buf_t b = {0};
    buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
    buf_append_json_str(&b, msg, strlen(msg));
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        const char *v = va_arg(ap, const char *);
        buf_append_str(&b, ",");
        buf_append_json_str(&b, k, strlen(k));
        buf_append_str(&b, ":");
        if (!v) buf_append_str(&b, "null");
        else if (raw) buf_append_str(&b, v);
        else buf_append_json_str(&b, v, strlen(v));
    }
    buf_append_str(&b, "}\n");
    if (b.data) {
        ssize_t w = write(STDERR_FILENO, b.data, b.len);
        (void)w;
    }
    buf_free(&b);
}

void log_msg(int level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    log_vwrite(level, msg, false, ap);
    va_end(ap);
}

void log_msg_json(int level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    log_vwrite(level, msg, true, ap);
    va_end(ap);
}
