-- title: Error vs head entropy
-- caption: Mean relative L2 error of each (step, layer, head) against the normalised entropy of its true attention, in bins of 0.1; one line per method, budget and value of every other setting that varies and can change the error (named in the legend). Averaged: the rows of every trace and feature-map seed of that setting, and runs differing only in hardware settings (which do not change the error). High-entropy heads spread their mass over many tokens, which a fixed budget of exact tokens misses.
-- order: 30
SELECT r.method || ' B=' || r.budget || COALESCE(' ' || l.acc_label, '') AS series,
       MIN(0.95, CAST(h.entropy * 10 AS INTEGER) / 10.0 + 0.05) AS entropy_bin,
       AVG(h.rel_l2)                                     AS err_mean,
       COUNT(*)                                          AS n_rows
FROM head_metrics h JOIN v_runs r USING (run_id) JOIN v_run_label l USING (run_id)
WHERE h.entropy IS NOT NULL AND h.rel_l2 > 0
GROUP BY r.method, r.budget, l.acc_label, entropy_bin
ORDER BY r.method, r.budget, l.acc_label, entropy_bin;
