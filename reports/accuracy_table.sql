-- accuracy_table.sql — mean rel_l2 by method, budget and head-entropy bucket
-- (entropy of each (step, layer, query head)'s true attention, normalised by
-- log(p+1); buckets < 0.5 and >= 0.5), over every complete run of a database
-- made by reports/sweeps/accuracy*.cfg.
SELECT r.method || CASE WHEN r.method = 'completion'
                        THEN '-' || json_extract(r.config_json, '$.spec.feature_map') ELSE '' END AS method,
       printf('%.1f%%', 100.0 * json_extract(r.config_json, '$.spec.budget_frac')) AS budget,
       json_extract(r.config_json, '$.resolved.budget') AS tokens,
       printf('%.4f', AVG(CASE WHEN h.entropy < 0.5 THEN h.rel_l2 END)) AS rel_l2_H_lt_05,
       printf('%.4f', AVG(CASE WHEN h.entropy >= 0.5 THEN h.rel_l2 END)) AS rel_l2_H_ge_05,
       SUM(h.entropy < 0.5) AS n_lt_05,
       SUM(h.entropy >= 0.5) AS n_ge_05,
       printf('%.1f', (SELECT AVG(value) FROM run_values v WHERE v.run_id IN
                (SELECT run_id FROM runs r2 WHERE r2.config_hash = r.config_hash) AND v.name = 'summary_token_eq')) AS summary_te
FROM runs r JOIN head_metrics h USING (run_id)
WHERE r.status = 'complete'
GROUP BY 1, 2
ORDER BY json_extract(r.config_json, '$.spec.budget_frac'),
         CASE r.method WHEN 'topk' THEN 0 WHEN 'quest' THEN 1 ELSE 2 END, 1;
