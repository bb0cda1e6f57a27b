-- reports/views.sql — SQL views over a kvsim results database (schema:
-- reports/SCHEMA.md).  Every view is TEMP: loading this file never changes
-- the database, and it works on a read-only file.  `kvsim report` loads it
-- before running the plot queries; by hand:
--
--   sqlite3 -cmd '.read reports/views.sql' results.db \
--     'SELECT method, budget, err_mean FROM v_run_summary ORDER BY method, budget'
--
-- Only runs with status 'complete' appear (a running or failed run's rows are
-- never mixed into results).  Conventions: err_* are means of head_metrics
-- rel_l2 (relative L2 error of the attention output, per query head and step);
-- latency figures are per decode step in microseconds; bytes are per decode
-- step (= per generated token of each sequence at batch 1).

-- Join rule: v_runs is the only view with settings (method, budget, ...);
-- every other per-run view has run_id plus columns no other view has, so any
-- of them joins v_runs (and each other) with USING (run_id) and unqualified
-- names.  v_run_summary and v_pareto are the exception: self-contained rows
-- (settings + metrics) to use alone.

-- One row per complete run with its settings pulled out of config_json:
-- {"spec": the run spec's canonical JSON, "resolved": budget and trace
-- geometry as run, "hw": the hardware config as resolved (file + overrides),
-- null for accuracy-only runs}.  A setting that does not apply to the run's
-- method is NULL (feature_map, features, sel and seed belong to completion;
-- page to quest and completion with select = quest; sinks and window to all
-- but full).
CREATE TEMP VIEW IF NOT EXISTS v_runs AS
SELECT r.run_id,
       r.sweep_id,
       r.kind,
       r.config_hash,
       r.trace,
       replace(replace(r.trace, rtrim(r.trace, replace(r.trace, '/', '')), ''), '.h5', '') AS trace_name,
       r.method,
       r.budget,
       json_extract(r.config_json, '$.spec.budget_frac')  AS budget_frac,
       json_extract(r.config_json, '$.spec.read_budget')  AS read_budget,
       json_extract(r.config_json, '$.spec.read_budget_frac') AS read_budget_frac,
       CASE WHEN r.method <> 'full' THEN json_extract(r.config_json, '$.spec.sinks') END  AS sinks,
       CASE WHEN r.method <> 'full' THEN json_extract(r.config_json, '$.spec.window') END AS window,
       CASE WHEN r.method = 'quest' OR (r.method = 'completion'
                 AND json_extract(r.config_json, '$.spec.select') = 'quest')
            THEN json_extract(r.config_json, '$.spec.page') END                          AS page,
       CASE WHEN r.method = 'completion' THEN json_extract(r.config_json, '$.spec.select') END      AS sel,
       CASE WHEN r.method = 'completion' THEN json_extract(r.config_json, '$.spec.feature_map') END AS feature_map,
       CASE WHEN r.method = 'completion' THEN json_extract(r.config_json, '$.spec.features') END    AS features,
       CASE WHEN r.method = 'completion' THEN json_extract(r.config_json, '$.spec.seed') END        AS seed,
       json_extract(r.config_json, '$.spec.layers')       AS layers,
       json_extract(r.config_json, '$.spec.steps')        AS steps,
       json_extract(r.config_json, '$.spec.batch')        AS batch,
       NULLIF(json_extract(r.config_json, '$.spec.model'), '') AS model,
       NULLIF(json_extract(r.config_json, '$.spec.hw'), '') AS hw,
       -- the hardware as resolved (hardware file plus hw.* overrides)
       json_extract(r.config_json, '$.hw.name')                          AS hw_name,
       json_extract(r.config_json, '$.hw.links.host_to_gpu.bw_bytes_per_s') AS host_bw_bytes_per_s,
       json_extract(r.config_json, '$.hw.policy.placement')              AS placement,
       -- share of the mid-region KV pages that live on SSD
       CASE WHEN json_extract(r.config_json, '$.hw.policy.placement') IS NULL THEN NULL
            WHEN json_extract(r.config_json, '$.hw.policy.placement') = 'ssd' THEN 1.0
            WHEN json_extract(r.config_json, '$.hw.policy.placement') = 'split'
                 THEN json_extract(r.config_json, '$.hw.policy.ssd_fraction')
            ELSE 0.0 END                                                 AS ssd_share,
       json_extract(r.config_json, '$.resolved.n_ctx')                   AS n_ctx,
       r.kvsim_version,
       r.config_json
FROM runs r
WHERE r.status = 'complete';

-- Every setting of every complete run in long form (run_id, key, value):
-- the run spec's keys (those that apply to its method, as in v_runs; trace
-- and hw as file names), its hardware overrides as 'hw.<dotted key>', the
-- kvsim build ('kvsim'), 'hw_version' and 'trace_version' (see below).
CREATE TEMP VIEW IF NOT EXISTS v_run_settings AS
SELECT r.run_id,
       j.key AS key,
       CASE WHEN j.key IN ('trace', 'hw') THEN replace(j.value, rtrim(j.value, replace(j.value, '/', '')), '')
            ELSE CAST(j.value AS TEXT) END AS value
FROM runs r, json_each(r.config_json, '$.spec') j
WHERE r.status = 'complete' AND j.key <> 'hw_overrides'
  AND NOT (j.key IN ('feature_map', 'features', 'select', 'seed') AND r.method <> 'completion')
  AND NOT (j.key = 'page' AND NOT (r.method = 'quest' OR (r.method = 'completion'
           AND json_extract(r.config_json, '$.spec.select') = 'quest')))
  AND NOT (j.key IN ('sinks', 'window') AND r.method = 'full')
  AND NOT (j.key IN ('budget', 'budget_frac', 'read_budget', 'read_budget_frac') AND r.method IN ('full', 'window'))
UNION ALL
SELECT r.run_id, 'hw.' || o.key, CAST(o.value AS TEXT)
FROM runs r, json_each(r.config_json, '$.spec.hw_overrides') o
WHERE r.status = 'complete'
-- what the spec does not show but the run identity covers: the kvsim build
-- that made the run, and the hardware file's contents when they changed
-- under the same file and overrides (numbered 1, 2, ... in text order)
UNION ALL
SELECT r.run_id, 'kvsim', r.kvsim_version FROM runs r WHERE r.status = 'complete'
UNION ALL
SELECT r.run_id, 'hw_version',
       CAST(DENSE_RANK() OVER (PARTITION BY json_extract(r.config_json, '$.spec.hw'),
                                            json_extract(r.config_json, '$.spec.hw_overrides')
                               ORDER BY json_extract(r.config_json, '$.hw')) AS TEXT)
FROM runs r
WHERE r.status = 'complete' AND json_extract(r.config_json, '$.hw') IS NOT NULL
-- the same for a trace file whose contents changed under the same path, when
-- the run recorded the fingerprint (config_json $.resolved.trace_fp)
UNION ALL
SELECT r.run_id, 'trace_version',
       CAST(DENSE_RANK() OVER (PARTITION BY r.trace
                               ORDER BY json_extract(r.config_json, '$.resolved.trace_fp')) AS TEXT)
FROM runs r
WHERE r.status = 'complete' AND json_extract(r.config_json, '$.resolved.trace_fp') IS NOT NULL;

-- The settings that vary among the database's complete runs: more than one
-- value, or (hardware overrides) set in some timing runs and not in others.
CREATE TEMP VIEW IF NOT EXISTS v_varying AS
SELECT key, COUNT(DISTINCT value) AS n_values
FROM v_run_settings
GROUP BY key
HAVING COUNT(DISTINCT value) > 1
    OR (key LIKE 'hw.%' AND COUNT(*) < (SELECT COUNT(*) FROM runs WHERE status = 'complete'
                                        AND COALESCE(json_extract(config_json, '$.spec.hw'), '') <> ''));

-- Per run, the varying settings as "key=value" labels for plot series (keys
-- sorted), leaving out what a plot puts on its x axis or averages over:
--   acc_label     settings that can change the error: no budget/budget_frac
--                 (the x axis), trace and seed (averaged), and no timing-only
--                 setting (hw, hw.*, hw_version, model, batch: they do not change
--                 the error)
--   budget_label  everything but budget/budget_frac, trace and seed
--   bw_label      everything but hw.links.host_to_gpu.bw_bytes_per_s, trace, seed
--   trace_label   trace_name when traces vary (else NULL)
CREATE TEMP VIEW IF NOT EXISTS v_run_label AS
WITH s AS (
  SELECT run_id, key, value FROM v_run_settings
  WHERE key IN (SELECT key FROM v_varying) AND key NOT IN ('method', 'trace', 'seed', 'accuracy')
  ORDER BY run_id, key)
SELECT r.run_id,
       (SELECT group_concat(key || '=' || value, ' ') FROM s WHERE s.run_id = r.run_id
          AND key NOT IN ('budget', 'budget_frac', 'hw', 'hw_version', 'model', 'batch')
          AND key NOT LIKE 'hw.%')                                                            AS acc_label,
       (SELECT group_concat(key || '=' || value, ' ') FROM s WHERE s.run_id = r.run_id
          AND key NOT IN ('budget', 'budget_frac'))                                          AS budget_label,
       (SELECT group_concat(key || '=' || value, ' ') FROM s WHERE s.run_id = r.run_id
          AND key <> 'hw.links.host_to_gpu.bw_bytes_per_s')                                  AS bw_label,
       CASE WHEN EXISTS (SELECT 1 FROM v_varying WHERE key = 'trace') THEN r.trace_name END AS trace_label
FROM v_runs r;

-- Accuracy per run: means over every (step, layer, head) row.
CREATE TEMP VIEW IF NOT EXISTS v_run_error AS
SELECT h.run_id,
       COUNT(*)                 AS n_rows,
       AVG(h.rel_l2)            AS err_mean,
       MAX(h.rel_l2)            AS err_max,
       AVG(h.cosine)            AS cosine_mean,
       AVG(h.exact_mass)        AS exact_mass_mean,
       AVG(h.est_mass)          AS est_mass_mean,
       AVG(h.true_resid_mass)   AS resid_mass_mean,
       AVG(h.entropy)           AS entropy_mean,
       AVG(h.tokens_exact)      AS tokens_exact_mean
FROM head_metrics h JOIN v_runs r USING (run_id)
GROUP BY h.run_id;

-- Accuracy per run and head-entropy bucket: 'low' (< 0.5: focused heads) and
-- 'high' (>= 0.5: broad heads); entropy is normalised by log(p + 1).
CREATE TEMP VIEW IF NOT EXISTS v_run_error_by_entropy AS
SELECT h.run_id,
       CASE WHEN h.entropy < 0.5 THEN 'low' ELSE 'high' END AS entropy_bucket,
       COUNT(*)          AS bucket_n_rows,
       AVG(h.rel_l2)     AS bucket_err_mean,
       AVG(h.exact_mass) AS bucket_exact_mass_mean,
       AVG(h.entropy)    AS bucket_entropy_mean
FROM head_metrics h JOIN v_runs r USING (run_id)
GROUP BY h.run_id, entropy_bucket;

-- Traffic per run: mean bytes per decode step by link, and bytes per token
-- off the GPU (host and SSD links, metadata and summaries included).
CREATE TEMP VIEW IF NOT EXISTS v_run_bytes AS
SELECT s.run_id,
       COUNT(*)                        AS n_steps,
       AVG(s.bytes_hbm_read)           AS hbm_read,
       AVG(s.bytes_host_to_gpu)        AS host_to_gpu,
       AVG(s.bytes_gpu_to_host)        AS gpu_to_host,
       AVG(s.bytes_ssd_to_host)        AS ssd_to_host,
       AVG(s.bytes_ssd_to_gpu)         AS ssd_to_gpu,
       AVG(s.bytes_meta)               AS meta,
       AVG(s.bytes_summary)            AS summary,
       AVG(s.bytes_host_to_gpu + s.bytes_ssd_to_host + s.bytes_ssd_to_gpu)
           / MAX(1, COALESCE(r.batch, 1)) AS offgpu_bytes_per_token,
       AVG(s.bytes_hbm_read + s.bytes_host_to_gpu + s.bytes_ssd_to_host + s.bytes_ssd_to_gpu)
           / MAX(1, COALESCE(r.batch, 1)) AS bytes_per_token,
       SUM(s.cache_hits) * 1.0 / MAX(1, SUM(s.cache_hits + s.cache_misses)) AS cache_hit_rate
FROM step_metrics s JOIN v_runs r USING (run_id)
GROUP BY s.run_id;

-- The same traffic in long form (run, link, mean bytes per step), one row per
-- link that moved anything — convenient for plots with one series per link.
CREATE TEMP VIEW IF NOT EXISTS v_run_bytes_long AS
SELECT run_id, 'hbm_read' AS link, hbm_read AS bytes_per_step FROM v_run_bytes WHERE hbm_read > 0
UNION ALL SELECT run_id, 'host_to_gpu', host_to_gpu FROM v_run_bytes WHERE host_to_gpu > 0
UNION ALL SELECT run_id, 'gpu_to_host', gpu_to_host FROM v_run_bytes WHERE gpu_to_host > 0
UNION ALL SELECT run_id, 'ssd_to_host', ssd_to_host FROM v_run_bytes WHERE ssd_to_host > 0
UNION ALL SELECT run_id, 'ssd_to_gpu',  ssd_to_gpu  FROM v_run_bytes WHERE ssd_to_gpu > 0
UNION ALL SELECT run_id, 'meta',        meta        FROM v_run_bytes WHERE meta > 0
UNION ALL SELECT run_id, 'summary',     summary     FROM v_run_bytes WHERE summary > 0;

-- Step latency percentiles per run (nearest rank: the smallest latency whose
-- rank is >= q * n), with window functions — SQLite 3.40 has no percentile().
CREATE TEMP VIEW IF NOT EXISTS v_run_latency AS
WITH ranked AS (
  SELECT s.run_id, s.latency_ns, s.stall_ns,
         ROW_NUMBER() OVER (PARTITION BY s.run_id ORDER BY s.latency_ns) AS rk,
         COUNT(*)     OVER (PARTITION BY s.run_id)                        AS n
  FROM step_metrics s JOIN v_runs r USING (run_id)
  WHERE s.latency_ns IS NOT NULL AND s.latency_ns > 0
)
SELECT run_id,
       MAX(n)                                                   AS lat_n_steps,
       AVG(latency_ns) / 1e3                                    AS lat_mean_us,
       MIN(CASE WHEN rk >= 0.50 * n THEN latency_ns END) / 1e3  AS lat_p50_us,
       MIN(CASE WHEN rk >= 0.90 * n THEN latency_ns END) / 1e3  AS lat_p90_us,
       MIN(CASE WHEN rk >= 0.99 * n THEN latency_ns END) / 1e3  AS lat_p99_us,
       MAX(latency_ns) / 1e3                                    AS lat_max_us,
       AVG(stall_ns) / 1e3                                      AS stall_mean_us,
       MAX(stall_ns) / 1e3                                      AS stall_max_us,
       SUM(stall_ns) * 1.0 / MAX(1, SUM(latency_ns))            AS stall_share
FROM ranked
GROUP BY run_id;

-- One row per complete run: settings, error, traffic, latency and stalls.
-- Self-contained (it repeats v_runs' settings): use it alone, or join other
-- views by run_id with qualified column names.
CREATE TEMP VIEW IF NOT EXISTS v_run_summary AS
SELECT r.run_id, r.sweep_id, r.trace_name, r.method, r.budget, r.budget_frac, r.read_budget, r.read_budget_frac,
       r.sinks, r.window, r.page, r.sel, r.feature_map, r.features, r.model, r.batch,
       r.hw, r.hw_name, r.host_bw_bytes_per_s, r.placement, r.ssd_share,
       e.err_mean, e.err_max, e.cosine_mean, e.exact_mass_mean, e.entropy_mean,
       (SELECT bucket_err_mean FROM v_run_error_by_entropy x WHERE x.run_id = r.run_id AND x.entropy_bucket = 'low')
           AS err_low_entropy,
       (SELECT bucket_err_mean FROM v_run_error_by_entropy x WHERE x.run_id = r.run_id AND x.entropy_bucket = 'high')
           AS err_high_entropy,
       b.bytes_per_token, b.offgpu_bytes_per_token,
       l.lat_mean_us, l.lat_p50_us, l.lat_p90_us, l.lat_p99_us,
       l.stall_mean_us, l.stall_share
FROM v_runs r
LEFT JOIN v_run_error   e USING (run_id)
LEFT JOIN v_run_bytes   b USING (run_id)
LEFT JOIN v_run_latency l USING (run_id);

-- Pareto front of error vs latency: runs with both figures for which no
-- other run is at least as good on both and better on one.  Computed over all
-- complete runs of the database (filter v_run_summary first for a subset).
CREATE TEMP VIEW IF NOT EXISTS v_pareto AS
SELECT a.*
FROM v_run_summary a
WHERE a.err_mean IS NOT NULL AND a.lat_p50_us IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM v_run_summary b
    WHERE b.err_mean IS NOT NULL AND b.lat_p50_us IS NOT NULL
      AND b.err_mean <= a.err_mean AND b.lat_p50_us <= a.lat_p50_us
      AND (b.err_mean < a.err_mean OR b.lat_p50_us < a.lat_p50_us));

-- ---- kvsim serve (sim/WORKLOAD.md) ------------------------------------------
-- These read the serve_* tables, which exist once a database holds a serve
-- run; in other databases the views load but querying them says "no such
-- table".  Percentiles are nearest rank (the smallest value whose rank is
-- >= p·n), over complete runs only.

-- Time between tokens per run, over every decode token of every request
-- (serve_tbt: absent for runs written with --no-tbt).
CREATE TEMP VIEW IF NOT EXISTS v_serve_tbt AS
WITH ranked AS (
  SELECT t.run_id, t.tbt_ns,
         ROW_NUMBER() OVER (PARTITION BY t.run_id ORDER BY t.tbt_ns) AS rk,
         COUNT(*)     OVER (PARTITION BY t.run_id)                    AS n
  FROM serve_tbt t JOIN runs r ON r.run_id = t.run_id AND r.status = 'complete'
)
SELECT run_id,
       MAX(n)                                              AS n_tokens,
       AVG(tbt_ns) / 1e6                                   AS tbt_mean_ms,
       MIN(CASE WHEN rk >= 0.50 * n THEN tbt_ns END) / 1e6 AS tbt_p50_ms,
       MIN(CASE WHEN rk >= 0.90 * n THEN tbt_ns END) / 1e6 AS tbt_p90_ms,
       MIN(CASE WHEN rk >= 0.99 * n THEN tbt_ns END) / 1e6 AS tbt_p99_ms,
       MAX(tbt_ns) / 1e6                                   AS tbt_max_ms
FROM ranked GROUP BY run_id;

-- TTFT and end-to-end latency per run, over its requests; SLO attainment.
CREATE TEMP VIEW IF NOT EXISTS v_serve_requests AS
WITH ranked AS (
  SELECT q.run_id, q.ttft_ns, q.e2e_ns, q.slo_ok, q.preemptions, q.output_tokens,
         q.bytes_host_to_gpu, q.bytes_gpu_to_host, q.bytes_ssd_to_host, q.bytes_ssd_to_gpu,
         ROW_NUMBER() OVER (PARTITION BY q.run_id ORDER BY q.ttft_ns) AS rk_ttft,
         ROW_NUMBER() OVER (PARTITION BY q.run_id ORDER BY q.e2e_ns)  AS rk_e2e,
         COUNT(*)     OVER (PARTITION BY q.run_id)                     AS n
  FROM serve_requests q JOIN runs r ON r.run_id = q.run_id AND r.status = 'complete'
)
SELECT run_id,
       MAX(n)                                                   AS n_requests,
       SUM(output_tokens)                                       AS output_tokens,
       AVG(ttft_ns) / 1e6                                       AS ttft_mean_ms,
       MIN(CASE WHEN rk_ttft >= 0.50 * n THEN ttft_ns END) / 1e6 AS ttft_p50_ms,
       MIN(CASE WHEN rk_ttft >= 0.99 * n THEN ttft_ns END) / 1e6 AS ttft_p99_ms,
       MIN(CASE WHEN rk_e2e >= 0.50 * n THEN e2e_ns END) / 1e6   AS e2e_p50_ms,
       MIN(CASE WHEN rk_e2e >= 0.99 * n THEN e2e_ns END) / 1e6   AS e2e_p99_ms,
       AVG(slo_ok)                                              AS slo_attainment,
       SUM(preemptions)                                         AS preemptions,
       SUM(bytes_host_to_gpu)                                   AS bytes_host_to_gpu,
       SUM(bytes_gpu_to_host)                                   AS bytes_gpu_to_host,
       SUM(bytes_ssd_to_host) + SUM(bytes_ssd_to_gpu)           AS bytes_from_ssd
FROM ranked GROUP BY run_id;
