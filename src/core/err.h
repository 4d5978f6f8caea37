/* err: the one error convention of herald.
 * Functions return 0 (or a byte count) on success and a negative HERALD_E* code on
 * failure. Parsers return bytes consumed, HERALD_NEED_MORE, or a negative code.
 * err_str() names a code for logs and error replies. Thread-safe, no state. */
#ifndef HERALD_ERR_H
#define HERALD_ERR_H

enum {
    HERALD_OK = 0,
    HERALD_NEED_MORE = -1,   /* parser: input ends inside an element; feed more */
    HERALD_EINVAL = -2,      /* malformed input */
    HERALD_ENOMEM = -3,      /* allocation failed */
    HERALD_ETOOBIG = -4,     /* input over a configured limit */
    HERALD_EIO = -5,         /* system call failed (errno tells) */
    HERALD_ECLOSED = -6,     /* the peer or the object is gone */
    HERALD_ENOTFOUND = -7,
    HERALD_EEXIST = -8,
    HERALD_EFORBIDDEN = -9,
    HERALD_EUNAUTH = -10,
    HERALD_ELIMIT = -11,     /* a count limit (connections, channels) was reached */
    HERALD_EAGAIN = -12,     /* try again later: not an error for non-blocking I/O */
    HERALD_EUNAVAIL = -13,   /* a required dependency is down */
    HERALD_EPROTO = -14,     /* protocol violation by the peer */
    HERALD_EUTF8 = -15,      /* invalid UTF-8 */
    HERALD_ESTOP = -16,      /* a callback asked the caller to stop (e.g. it closed the connection) */
};

const char *err_str(int code);

#endif
