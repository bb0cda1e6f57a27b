-- title: Error vs budget, focused and broad heads
-- caption: The headline comparison: mean relative L2 error against the budget, split by the entropy of the true attention (normalised by log(p+1)): "low" heads (< 0.5, focused: retrieval and local heads) and "high" heads (>= 0.5, broad). One line per method and bucket, averaged over traces. Log-log axes.
-- order: 10
SELECT r.method || ' ' || x.entropy_bucket || '-entropy' AS series,
       r.budget                                          AS budget,
       SUM(x.err_mean * x.n_rows) / SUM(x.n_rows)        AS err_mean,
       SUM(x.n_rows)                                     AS n_rows
FROM v_runs r JOIN v_run_error_by_entropy x USING (run_id)
WHERE r.budget > 0 AND x.err_mean > 0
GROUP BY r.method, x.entropy_bucket, r.budget
ORDER BY x.entropy_bucket DESC, r.method, r.budget;
