-- title: Error vs budget, focused and broad heads
-- caption: The headline comparison: mean relative L2 error against the budget, split by the entropy of the true attention (normalised by log(p+1)): "low" heads (< 0.5, focused: retrieval and local heads) and "high" heads (>= 0.5, broad). One line per method, bucket and value of every other setting that varies and can change the error (named in the legend). Averaged: over traces and feature-map seeds (weighted by head rows; n_runs in the data), and over hardware settings, which do not change the error. Log-log axes.
-- order: 10
SELECT r.method || ' ' || x.entropy_bucket || '-entropy' || COALESCE(' ' || l.acc_label, '') AS series,
       r.budget                                          AS budget,
       SUM(x.bucket_err_mean * x.bucket_n_rows) / SUM(x.bucket_n_rows) AS err_mean,
       SUM(x.bucket_n_rows)                              AS n_rows,
       COUNT(*)                                          AS n_runs
FROM v_runs r JOIN v_run_error_by_entropy x USING (run_id) JOIN v_run_label l USING (run_id)
WHERE r.budget > 0 AND x.bucket_err_mean > 0
GROUP BY series, r.budget
ORDER BY x.entropy_bucket DESC, series, r.budget;
