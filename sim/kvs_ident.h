/* kvs_ident.h — run identity: the digest that says "these inputs give these
 * rows".  A run's identity (runs.config_hash) covers
 *   - the run spec's canonical JSON (kvs_run_spec_json: method, budget, paths...),
 *   - the resolved hardware contents (kvs_hw_json of the file loaded with the
 *     run's overrides; NULL for accuracy-only runs),
 *   - a fingerprint of the trace FILE's contents (below),
 *   - the source revision baked in at build time (KVSIM_VERSION + git describe),
 *   - the SIMD path chosen at run time (kvs_simd_path(): "avx2+f16c"/"scalar").
 * So a sweep re-runs a point whose hardware file or trace changed under the
 * same path, or that an other build of kvsim made.
 *
 * Trace fingerprint: size, mtime (ns) and an FNV-1a 64 digest of a sample of
 * the file's bytes — the first 64 KiB (the HDF5 superblock and the root
 * group's object header, where a kvtrace's attributes live), the last 64 KiB,
 * and 16 blocks of 4 KiB spread evenly in between (chunks of the K/V/q
 * datasets).  At most 192 KiB are read whatever the file size; the bytes are
 * read with pread, never through libhdf5, so a corrupt file cannot crash the
 * caller (a sweep parent).  A change of size, mtime or any sampled byte
 * changes the identity; a same-size edit that keeps the mtime and avoids
 * every sampled block does not (documented limit).
 *
 * Digest: FNV-1a 64 over the fields, each followed by a NUL, printed as 16
 * lowercase hex digits (the runs.config_hash format).
 *
 * Ownership: pure functions; strings returned by kvs_ident_revision /
 * kvs_ident_simd are static.  Errors: -1 with "PATH: problem" in err (the
 * trace cannot be opened or read). */
#ifndef KVS_IDENT_H
#define KVS_IDENT_H
#include <stddef.h>
#include <stdint.h>
#include "kvs_run.h"

/* The whole identity of one run (see above). */
int kvs_ident_run_hash(const char *spec_json, const char *hw_json_or_null, const char *trace_path,
                       char out_hex[17], char *err, size_t errlen);

/* The identity of a run spec, as kvs_run_execute records it and a sweep
 * looks it up: spec JSON = kvs_run_spec_json(s); hardware = kvs_hw_json of
 * kvs_hw_load(s->hw, s's overrides) as loaded, before any per-run
 * adjustment; the trace = s->trace.  -1 with a message when the hardware
 * file does not load or the trace cannot be read. */
int kvs_ident_spec_hash(const kvs_run_spec *s, char out_hex[17], char *err, size_t errlen);

/* The trace part alone: size, mtime and sampled bytes folded into 64 bits. */
int kvs_ident_trace_fp(const char *trace_path, uint64_t *fp, char *err, size_t errlen);

/* The identity from parts already computed (trace_fp from kvs_ident_trace_fp);
 * kvs_ident_run_hash == kvs_ident_combine(spec, hw, fp(trace)). */
void kvs_ident_combine(const char *spec_json, const char *hw_json_or_null, uint64_t trace_fp, char out_hex[17]);

/* "0.1.0+<git describe>" — what runs.kvsim_version records. */
const char *kvs_ident_revision(void);
/* The SIMD path of this process ("avx2+f16c" or "scalar"). */
const char *kvs_ident_simd(void);
#endif
