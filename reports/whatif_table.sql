-- whatif_table.sql — one row per run of reports/sweeps/whatif.cfg: mean
-- decode-step latency and bytes per step on each link, with the error.
SELECT r.method || CASE WHEN r.method = 'full' THEN '' ELSE
         printf(' %.0f%%', 100.0 * json_extract(r.config_json, '$.spec.budget_frac')) END AS method,
       json_extract(r.config_json, '$.hw.policy.placement') AS kv,
       CASE WHEN json_extract(r.config_json, '$.hw.name') LIKE '%gen5%' THEN 'nvme5' ELSE 'virtio' END AS ssd,
       json_extract(r.config_json, '$.hw.policy.cache') AS cache,
       printf('%.1f', AVG(s.latency_ns) / 1e3) AS step_us,
       printf('%.1f', AVG(s.stall_ns) / 1e3) AS stall_us,
       printf('%.1f', AVG(s.bytes_hbm_read) / 1e6) AS hbm_MB,
       printf('%.2f', AVG(s.bytes_host_to_gpu) / 1e6) AS h2g_MB,
       printf('%.2f', AVG(s.bytes_ssd_to_host + s.bytes_ssd_to_gpu) / 1e6) AS ssd_MB,
       printf('%.2f', AVG(CASE WHEN s.cache_hits + s.cache_misses > 0
                      THEN 1.0 * s.cache_hits / (s.cache_hits + s.cache_misses) END)) AS hit_rate,
       printf('%.4f', (SELECT AVG(rel_l2) FROM head_metrics h WHERE h.run_id = r.run_id)) AS rel_l2
FROM runs r JOIN step_metrics s USING (run_id)
WHERE r.status = 'complete' AND r.sweep_id LIKE 'whatif%'
  AND NOT (r.method = 'full' AND json_extract(r.config_json, '$.spec.budget_frac') > 0.01)
GROUP BY r.run_id
ORDER BY CASE r.method WHEN 'full' THEN 0 WHEN 'topk' THEN 1 ELSE 2 END,
         json_extract(r.config_json, '$.spec.budget_frac'),
         CASE json_extract(r.config_json, '$.hw.policy.placement') WHEN 'hbm' THEN 0 WHEN 'host' THEN 1 ELSE 2 END,
         ssd DESC, cache DESC;
