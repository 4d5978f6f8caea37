#include "core/err.h"

const char *err_str(int code)
{
    switch (code) {
    case HERALD_OK: return "ok";
    case HERALD_NEED_MORE: return "need more input";
    case HERALD_EINVAL: return "malformed input";
    case HERALD_ENOMEM: return "out of memory";
    case HERALD_ETOOBIG: return "over the size limit";
    case HERALD_EIO: return "i/o error";
    case HERALD_ECLOSED: return "closed";
    case HERALD_ENOTFOUND: return "not found";
    case HERALD_EEXIST: return "already exists";
    case HERALD_EFORBIDDEN: return "forbidden";
    case HERALD_EUNAUTH: return "unauthorized";
    case HERALD_ELIMIT: return "limit reached";
    case HERALD_EAGAIN: return "try again";
    case HERALD_EUNAVAIL: return "unavailable";
    case HERALD_EPROTO: return "protocol error";
    case HERALD_EUTF8: return "invalid utf-8";
    case HERALD_ESTOP: return "stopped";
    default: return "unknown error";
    }
}
