/* log: JSON-lines logging on stderr: {"ts","level","msg", fields...}.
 * The level threshold is set once at start-up (log_set_level) before threads start;
 * each line is written with one write(2) so lines from workers never interleave.
 * Secrets must never be passed as fields. Any thread. */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Returns 0, or HERALD_EINVAL for an unknown level name. */
int log_set_level(const char *name);
int log_parse_level(const char *name);   /* level or -1 */
bool log_enabled(int level);

/* fields: pairs of key and value strings, then NULL. Values are JSON-escaped.
 * log_msg(LOG_INFO, "listening", "address", "0.0.0.0:8080", NULL) */
void log_msg(int level, const char *msg, ...) __attribute__((sentinel));

/* Like log_msg but the field values are raw JSON (numbers, objects). */
void log_msg_json(int level, const char *msg, ...) __attribute__((sentinel));

#endif
