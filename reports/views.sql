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

-- One row per complete run with its settings pulled out of config_json:
-- {"spec": the run spec's canonical JSON (its hash is config_hash),
--  "resolved": budget and trace geometry as run, "hw": the hardware config
--  as resolved (file + overrides), null for accuracy-only runs}.
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
       json_extract(r.config_json, '$.spec.sinks')        AS sinks,
       json_extract(r.config_json, '$.spec.window')       AS window,
       json_extract(r.config_json, '$.spec.page')         AS page,
       json_extract(r.config_json, '$.spec.select')       AS sel,
       json_extract(r.config_json, '$.spec.feature_map')  AS feature_map,
       json_extract(r.config_json, '$.spec.features')     AS features,
       json_extract(r.config_json, '$.spec.layers')       AS layers,
       json_extract(r.config_json, '$.spec.steps')        AS steps,
       json_extract(r.config_json, '$.spec.batch')        AS batch,
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
       r.config_json
FROM runs r
WHERE r.status = 'complete';

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
       COUNT(*)          AS n_rows,
       AVG(h.rel_l2)     AS err_mean,
       AVG(h.exact_mass) AS exact_mass_mean,
       AVG(h.entropy)    AS entropy_mean
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
       MAX(n)                                                   AS n_steps,
       AVG(latency_ns) / 1e3                                    AS lat_mean_us,
       MIN(CASE WHEN rk >= 0.50 * n THEN latency_ns END) / 1e3  AS lat_p50_us,
       MIN(CASE WHEN rk >= 0.90 * n THEN latency_ns END) / 1e3  AS lat_p90_us,
       MIN(CASE WHEN rk >= 0.99 * n THEN latency_ns END) / 1e3  AS lat_p99_us,
       MAX(latency_ns) / 1e3                                    AS lat_max_us,
       AVG(stall_ns) / 1e3                                      AS stall_mean_us
FROM ranked
GROUP BY run_id;

-- One row per complete run: settings, error, traffic, latency.
CREATE TEMP VIEW IF NOT EXISTS v_run_summary AS
SELECT r.run_id, r.sweep_id, r.trace_name, r.method, r.budget, r.budget_frac,
       r.sel, r.feature_map, r.features, r.hw, r.host_bw_bytes_per_s, r.placement, r.ssd_share,
       e.err_mean, e.err_max, e.cosine_mean, e.exact_mass_mean, e.entropy_mean,
       (SELECT err_mean FROM v_run_error_by_entropy x WHERE x.run_id = r.run_id AND x.entropy_bucket = 'low')
           AS err_low_entropy,
       (SELECT err_mean FROM v_run_error_by_entropy x WHERE x.run_id = r.run_id AND x.entropy_bucket = 'high')
           AS err_high_entropy,
       b.bytes_per_token, b.offgpu_bytes_per_token,
       l.lat_mean_us, l.lat_p50_us, l.lat_p90_us, l.lat_p99_us
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
