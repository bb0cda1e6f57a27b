/* kvs_hwval.h — replays a measured hierarchy benchmark (the output format of
 * shared/h200/hier_bench.cu, shipped as sim/hw/h200_measured.txt) through
 * the hardware model: every row becomes transfers on a fresh event queue
 * (kvs_link), and the predicted figure is compared with the measured one.
 *
 * Rows: single pinned copies by size (h2d and d2h, µs), paged gathers by
 * page size × mechanism (GB/s), SSD random reads by block × threads (GB/s),
 * plus launch+sync and HBM copy, which define their parameters directly.
 * Lines starting with '#' are comments; unknown lines are an error.
 *
 * Ownership: *rows is malloc'd, the caller frees it.
 * Errors: -1 with "FILE:LINE: ..." for a missing or malformed file. */
#ifndef KVS_HWVAL_H
#define KVS_HWVAL_H
#include "kvs_hw.h"
#include <stddef.h>

typedef struct {
    char what[64];        /* e.g. "h2d copy 4096 B" */
    char unit[8];         /* "us" or "GB/s" */
    double measured, predicted;
    int fitted;           /* 1: the row is a model prediction; 0: defines a parameter */
} kvs_hwval_row;

int kvs_hwval_run(const kvs_hw *hw, const char *measured_path, kvs_hwval_row **rows, size_t *n_rows,
                  char *err, size_t errlen);
/* max and median |predicted/measured - 1| over rows with fitted = 1. */
void kvs_hwval_errors(const kvs_hwval_row *rows, size_t n, double *max_err, double *median_err);
#endif
