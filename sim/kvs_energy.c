/* kvs_energy.c — energy by component (kvs_energy.h). */
#include "kvs_energy.h"
#include "kvs_err.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvs_energy_check(const kvs_hw *hw, char *err, size_t errlen) {
    const struct { const char *name; double v; } f[] = {
        {"energy.hbm_pj_per_byte", hw->energy.hbm_pj_per_byte},
        {"energy.dram_pj_per_byte", hw->energy.dram_pj_per_byte},
        {"energy.pcie_pj_per_byte", hw->energy.pcie_pj_per_byte},
        {"energy.nvme_pj_per_byte", hw->energy.nvme_pj_per_byte},
        {"energy.gpu_pj_per_flop", hw->energy.gpu_pj_per_flop},
    };
    int n_set = 0;
    const char *missing = NULL, *set = NULL;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v > 0) {
            n_set++;
            if (!set) set = f[i].name;
        } else if (!missing) {
            missing = f[i].name;
        }
    }
    int idle = hw->energy.gpu_idle_w > 0 || hw->energy.host_idle_w > 0 || hw->energy.ssd_idle_w > 0;
    if (n_set == 0 && !idle) return 0;
    if (missing) {
        kvs_seterr(err, errlen, "energy figures are incomplete: %s is given but %s is not (give every "
                   "per-byte and per-FLOP figure, or none)", set ? set : "an idle power", missing);
        return -1;
    }
    return 1;
}

void kvs_energy_joules(const kvs_hw *hw, const kvs_energy_use *u, kvs_energy_j *o) {
    const double pj = 1e-12;
    o->hbm_j = u->hbm_bytes * hw->energy.hbm_pj_per_byte * pj;
    o->dram_j = u->dram_bytes * hw->energy.dram_pj_per_byte * pj;
    o->pcie_j = u->pcie_bytes * hw->energy.pcie_pj_per_byte * pj;
    o->nvme_j = u->nvme_bytes * hw->energy.nvme_pj_per_byte * pj;
    o->compute_j = u->flops * hw->energy.gpu_pj_per_flop * pj;
    o->idle_j = (hw->energy.gpu_idle_w + hw->energy.host_idle_w + hw->energy.ssd_idle_w) * u->span_ns * 1e-9;
    o->total_j = o->hbm_j + o->dram_j + o->pcie_j + o->nvme_j + o->compute_j + o->idle_j;
}

void kvs_energy_add_step(kvs_energy_use *u, const kvs_step_row *r, double flops) {
    u->hbm_bytes += (double)r->bytes_hbm_read;
    u->pcie_bytes += (double)(r->bytes_host_to_gpu + r->bytes_gpu_to_host + r->bytes_ssd_to_gpu);
    u->dram_bytes += (double)(r->bytes_host_to_gpu + r->bytes_gpu_to_host + r->bytes_ssd_to_host);
    u->nvme_bytes += (double)(r->bytes_ssd_to_host + r->bytes_ssd_to_gpu);
    u->flops += flops;
    u->span_ns += (double)r->latency_ns;
}

double kvs_energy_decode_flops(const kvs_model *m, int batch, double tokens_per_cell) {
    const int group = m->n_heads / m->n_kv_heads;
    double per_seq = 2.0 * kvs_model_layer_params(m) * m->n_layers + 2.0 * (double)m->vocab * m->hidden +
                     4.0 * m->head_dim * group * tokens_per_cell * m->n_kv_heads * m->n_layers;
    return per_seq * batch;
}

int kvs_energy_append_run(const kvs_hw *hw, const char *model, const kvs_geom *g, int batch,
                          double tokens_per_cell, const kvs_step_row *rows, size_t n_rows,
                          kvs_value_row **values, size_t *n_values, char *err, size_t errlen) {
    int c = kvs_energy_check(hw, err, errlen);
    if (c <= 0 || n_rows == 0) return c < 0 ? -1 : 0;
    kvs_model m;
    if (model && *model) {
        if (kvs_preset_get(model, &m, err, errlen)) return -1;
    } else {
        kvs_model_from_trace(g->n_layers, g->n_heads, g->n_kv_heads, g->head_dim, &m);
    }
    if (batch < 1) batch = 1;
    const double flops = kvs_energy_decode_flops(&m, batch, tokens_per_cell);
    kvs_energy_use u = {0};
    for (size_t i = 0; i < n_rows; i++) kvs_energy_add_step(&u, &rows[i], flops);
    kvs_energy_j e;
    kvs_energy_joules(hw, &u, &e);
    const double n = (double)n_rows;
    const struct { const char *name; double v; } add[] = {
        {"energy_j_per_step", e.total_j / n},
        {"energy_j_per_token", e.total_j / n / batch},
        {"energy_hbm_j_per_step", e.hbm_j / n},
        {"energy_dram_j_per_step", e.dram_j / n},
        {"energy_pcie_j_per_step", e.pcie_j / n},
        {"energy_nvme_j_per_step", e.nvme_j / n},
        {"energy_compute_j_per_step", e.compute_j / n},
        {"energy_idle_j_per_step", e.idle_j / n},
    };
    const size_t k = sizeof add / sizeof add[0];
    kvs_value_row *v = realloc(*values, (*n_values + k) * sizeof *v);
    if (!v) {
        kvs_seterr(err, errlen, "out of memory");
        return -1;
    }
    *values = v;
    for (size_t i = 0; i < k; i++) {
        memset(&v[*n_values], 0, sizeof v[0]);
        snprintf(v[*n_values].name, sizeof v[0].name, "%s", add[i].name);
        v[*n_values].value = add[i].v;
        (*n_values)++;
    }
    return 0;
}
