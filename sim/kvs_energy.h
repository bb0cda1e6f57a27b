/* kvs_energy.h — energy of a simulated run by component, from the bytes and
 * FLOPs it moved and computed and the time it lasted (pure functions).
 *
 * Model (figures and their published sources: the `energy` group of the
 * hardware presets, sim/hw/ *.cfg files; keys documented in sim/WORKLOAD.md, "Energy"):
 *   E = hbm_bytes·hbm_pj_per_byte + dram_bytes·dram_pj_per_byte
 *     + pcie_bytes·pcie_pj_per_byte + nvme_bytes·nvme_pj_per_byte
 *     + flops·gpu_pj_per_flop
 *     + (gpu_idle_w + host_idle_w + ssd_idle_w)·span
 * Bytes of a step row (kvs_step_row) map to components as:
 *   hbm  = bytes_hbm_read (KV, metadata, summaries, weights read in HBM)
 *   pcie = bytes_host_to_gpu + bytes_gpu_to_host + bytes_ssd_to_gpu
 *   dram = bytes_host_to_gpu + bytes_gpu_to_host + bytes_ssd_to_host
 *          (each host-side read or write of DRAM once)
 *   nvme = bytes_ssd_to_host + bytes_ssd_to_gpu
 *   span = latency_ns (the step's duration)
 * FLOPs of a decode step (kvs_energy_decode_flops): 2·params of every layer
 * and of the LM head per sequence, plus attention 4·head_dim·group per token
 * read exactly, per KV head and layer.
 * Not modelled: activations, KV writes of new tokens, CPU work, cooling;
 * per-byte figures are averages (no row-buffer or link-state effects).
 *
 * Configured means every per-byte and per-FLOP figure is > 0 (idle power may
 * be 0); none set means energy is not modelled (nothing is recorded); a
 * partial set is an error naming the first missing key.
 * Ownership: *values is realloc'd by kvs_energy_append_run (caller frees). */
#ifndef KVS_ENERGY_H
#define KVS_ENERGY_H
#include "kvs_db.h"
#include "kvs_hw.h"
#include "kvs_preset.h"
#include "kvs_replay.h"
#include <stddef.h>

typedef struct {
    double hbm_bytes, dram_bytes, pcie_bytes, nvme_bytes, flops, span_ns;
} kvs_energy_use;

typedef struct {
    double hbm_j, dram_j, pcie_j, nvme_j, compute_j, idle_j, total_j;
} kvs_energy_j;

/* 1: configured, 0: no energy figures, -1: partial (message in err). */
int kvs_energy_check(const kvs_hw *hw, char *err, size_t errlen);
void kvs_energy_joules(const kvs_hw *hw, const kvs_energy_use *u, kvs_energy_j *out);
/* Adds one step row's bytes and duration (and its FLOPs) to *u. */
void kvs_energy_add_step(kvs_energy_use *u, const kvs_step_row *r, double flops);
/* FLOPs of one decode step of `batch` sequences reading tokens_per_cell
 * tokens exactly per (layer, KV head). */
double kvs_energy_decode_flops(const kvs_model *m, int batch, double tokens_per_cell);
/* For `kvsim run`: appends energy_j_per_step, energy_j_per_token and
 * energy_<component>_j_per_step (hbm, dram, pcie, nvme, compute, idle) to
 * *values when the hardware has energy figures; the target model is the
 * preset `model` (NULL/"" = the trace's geometry `g`).  0, or -1 with a
 * message (partial energy figures, unknown preset, out of memory). */
int kvs_energy_append_run(const kvs_hw *hw, const char *model, const kvs_geom *g, int batch,
                          double tokens_per_cell, const kvs_step_row *rows, size_t n_rows,
                          kvs_value_row **values, size_t *n_values, char *err, size_t errlen);
#endif
