/* kvs_cfg.h — strict reading of libconfig files, shared by the hardware
 * loader (kvs_hw) and the sweep parser (kvs_sweep).  Owner: HW.
 *
 * Why: Debian's libconfig 1.5 reads a decimal integer literal above 2^31
 * modulo 2^32 (`5000000000` becomes 705032704, `4294967296` becomes 0) and
 * resolves every @include from one folder, naming the includer, not the
 * missing file, when one is absent.  kvs_cfg_read() therefore preprocesses
 * the file's text before libconfig parses it:
 *   - `@include "P"` lines (at the start of a line, outside comments and
 *     strings, as libconfig accepts them) are replaced by the text of P,
 *     resolved relative to the folder of the file that holds the line (an
 *     absolute P as is), recursively, at most 16 deep;
 *   - an integer literal (decimal or 0x hex, optional sign) that does not fit
 *     in 32 bits is read as libconfig's 64-bit integer (an `L` suffix is
 *     added; in an array [ ] every integer literal gets one, since libconfig
 *     wants one element type); a literal beyond 64 bits is an error.
 *   Floats (`1e12`, `5.0e9`) are untouched.  Every line of the expanded
 *   text remembers its file and line, so settings and errors name the file
 *   they were written in.
 *
 * Contract:
 *   kvs_cfg_read(path)  -> a handle, or NULL with one line in err:
 *       "FILE: cannot open (No such file or directory)",
 *       "FILE:LINE: cannot open included file 'P' (DIR/P): No such file ...",
 *       "FILE:LINE: @include nested more than 16 deep (a cycle?)",
 *       "FILE:LINE: integer 99999999999999999999 does not fit in 64 bits",
 *       "FILE:LINE: syntax error" (libconfig's text).
 *   The parsed tree is libconfig's: walk it from kvs_cfg_root() with the
 *   usual config_setting_* calls (config_lookup(kvs_cfg_config(c), ...)),
 *   but take a setting's place from kvs_cfg_file()/kvs_cfg_line()/
 *   kvs_cfg_where(), NOT config_setting_source_line() (that is the line in
 *   the expanded text) or config_setting_source_file() (NULL here).
 *   kvs_cfg_get_int64() accepts an INT, an INT64, or a FLOAT whose value is
 *   an integer of magnitude <= 2^53 (so `1e12` may be written); both getters
 *   check finiteness and the inclusive range [lo, hi], and name the setting
 *   ("FILE:LINE: axes.seed[2] = 3.5 must be an integer").
 * Ownership: the handle owns the tree and every string it returns; free it
 *   with kvs_cfg_free().  Nothing here prints or exits. */
#ifndef KVS_CFG_H
#define KVS_CFG_H
#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_cfg kvs_cfg;

kvs_cfg *kvs_cfg_read(const char *path, char *err, size_t errlen);
void kvs_cfg_free(kvs_cfg *c);
config_t *kvs_cfg_config(kvs_cfg *c);
config_setting_t *kvs_cfg_root(const kvs_cfg *c);
/* The path given to kvs_cfg_read. */
const char *kvs_cfg_path(const kvs_cfg *c);

/* Where a setting was written: the file (the top path, or an included file
 * as resolved: "DIR/P") and its line there (0 when unknown). */
const char *kvs_cfg_file(const kvs_cfg *c, const config_setting_t *s);
int kvs_cfg_line(const kvs_cfg *c, const config_setting_t *s);
/* "FILE:LINE: " into buf (n >= 1); returns buf. */
const char *kvs_cfg_where(const kvs_cfg *c, const config_setting_t *s, char *buf, size_t n);
/* Dotted name of a setting, list elements as [i] ("axes.budget[2]"). */
const char *kvs_cfg_name(const config_setting_t *s, char *buf, size_t n);

int kvs_cfg_get_int64(const kvs_cfg *c, const config_setting_t *s, int64_t lo, int64_t hi, int64_t *out,
                      char *err, size_t errlen);
int kvs_cfg_get_double(const kvs_cfg *c, const config_setting_t *s, double lo, double hi, double *out,
                       char *err, size_t errlen);
#endif
