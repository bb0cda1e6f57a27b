/* kvs_err.h — the one error-reporting idiom of kvsim's modules.
 *
 * Contract: functions that can fail on bad input return 0 or -1 and write
 * one line (no trailing newline) into a caller-owned buffer `err` of
 * `errlen` bytes; kvs_seterr() formats that line and is a no-op when the
 * caller passed no buffer.  Lives in traces/ because that is the lowest
 * layer: models/ and sim/ may include it too. */
#ifndef KVS_ERR_H
#define KVS_ERR_H
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline void kvs_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void kvs_seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
#endif
