-- title: Attention error vs budget, by method
-- caption: Mean relative L2 error of the attention output (averaged over every decode step, layer and query head of a run) against the budget B, the tokens read exactly per step, layer and KV head. One line per method and per value of every other setting that varies in the database and can change the error (feature map, features, selector, sinks, window, page, read budget, layers, steps: named in the legend). Averaged: the traces and feature-map seeds of a sweep (n_runs in the data says how many runs each point holds); hardware settings do not change the error and runs differing only in them are averaged too. Log-log axes; lower is better.
-- order: 20
SELECT r.method || COALESCE(' ' || l.acc_label, '') AS series,
       r.budget            AS budget,
       AVG(e.err_mean)     AS err_mean,
       COUNT(*)            AS n_runs
FROM v_runs r JOIN v_run_error e USING (run_id) JOIN v_run_label l USING (run_id)
WHERE r.budget > 0 AND e.err_mean > 0
GROUP BY series, r.budget
ORDER BY series, budget;
