/* kvs_validate.h — check a file against every rule of kvtrace v1
 * (traces/FORMAT.md).
 *
 * Contract: kvs_validate_file() never stops at the first problem: it checks
 *   1. root attributes: presence of the required ones and the class of every
 *      known one (integer / float / string, one element), kvtrace_version
 *      == 1, positive dimensions, n_heads % n_kv_heads == 0, rope value
 *      ("applied"|"none"), rope_style value, positive rope_theta/scale;
 *   2. every group layer_%03d for l < n_layers with datasets k, v
 *      [n_kv_heads, T0+S, head_dim], q [S, n_heads, head_dim] of float16 or
 *      float32, optional o_ref [S, n_heads, head_dim] float32, optional root
 *      tokens integer [T0+S]; each dataset's data really stored (rule
 *      "written data", kvs_h5_check_storage: not never/partially written,
 *      stored bytes within the file, claimed size <= 1100x stored bytes) —
 *      this bounds the work of rule 3 by the file's size, so a small file
 *      claiming 2^30 positions is rejected in milliseconds;
 *   3. when 1-2 hold: every value of every dataset finite (streamed one head
 *      and a block of rows at a time, memory bounded; the NaN/Inf test is the
 *      reader's own, done inside the float16 conversion);
 *   4. with opts->check_ref and when 1-3 hold: o_ref against full causal GQA
 *      attention recomputed in double from the stored tensors; the largest
 *      per-row relative L2 error ||o_ref - o|| / ||o|| of each layer must be
 *      <= ref_tol (default 1e-3).
 *   Each problem is one line "FILE: OBJECT: RULE: detail" written to `out`
 *   (when non-NULL; at most 20 lines per rule and object, then a count).
 *   With opts->info non-NULL, per-layer o_ref figures go there as
 *   "FILE: /layer_003/o_ref: max rel L2 2.1e-07 over 768 rows".
 *   Returns 0 when valid, 1 when any problem was found (res filled in
 *   either case; res may be NULL).
 *   With opts->isolate the checks run in a fork()ed child whose lines are
 *   relayed to out/info: a crash INSIDE the HDF5 library on a corrupt file
 *   (HDF5 1.10 trusts e.g. global-heap object sizes behind variable-length
 *   strings and can segfault or loop forever) then becomes the problem
 *   "FILE: /: HDF5 library: crashed ..." (or "hung": the structure phase
 *   has a 20 s alarm in the child), and the caller survives.  The child is
 *   SIGKILLed when the parent dies (PR_SET_PDEATHSIG), so killing
 *   `kvsim trace validate` never leaves it running.  Without it the checks
 *   run in-process: our own code never crashes on bad input, but HDF5's may.
 * Ownership: caller owns everything passed in; nothing is kept.
 * Errors: an unreadable or non-HDF5 file is a problem of the file (return
 *   1), never a crash. */
#ifndef KVS_VALIDATE_H
#define KVS_VALIDATE_H
#include "kvs_trace.h"
#include <stdio.h>

typedef struct {
    int check_ref;        /* recompute o_ref (cost S*n_heads*T*head_dim per layer) */
    double ref_tol;       /* <= 0: 1e-3 */
    FILE *info;           /* per-layer o_ref figures, or NULL */
    int isolate;          /* run the checks in a forked child process */
    kvs_trace_progress_fn progress;   /* optional: values scanned so far / to scan (and, with
                                         check_ref, the o_ref rows as values); called in the
                                         process doing the work (the child when isolated) */
    void *progress_ctx;
} kvs_validate_opts;

typedef struct {
    int n_problems;
    int structure_ok;      /* rules 1-2 hold */
    int values_ok;         /* rule 3 checked and holds */
    long long values_scanned;
    int ref_checked;       /* rule 4 ran (o_ref present in every layer) */
    double ref_max_rel_l2; /* over all layers, when ref_checked */
    char first[512];       /* first problem line ("" when valid) */
} kvs_validate_result;

int kvs_validate_file(const char *path, const kvs_validate_opts *opts, FILE *out, kvs_validate_result *res);
#endif
