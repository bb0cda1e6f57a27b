-- title: Attention error vs budget, by method
-- caption: Mean relative L2 error of the attention output (averaged over every decode step, layer and query head of a run, then over the runs with the same method and budget — e.g. the traces of a sweep) against the budget B, the tokens read exactly per step, layer and KV head. Log-log axes; lower is better.
-- order: 20
SELECT r.method            AS series,
       r.budget            AS budget,
       AVG(e.err_mean)     AS err_mean,
       COUNT(*)            AS n_runs
FROM v_runs r JOIN v_run_error e USING (run_id)
WHERE r.budget > 0 AND e.err_mean > 0
GROUP BY r.method, r.budget
ORDER BY series, budget;
