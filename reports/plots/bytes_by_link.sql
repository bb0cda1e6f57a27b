-- title: Bytes per decode step by link vs budget
-- caption: Mean bytes moved per decode step (all layers) on each link of the hierarchy — HBM reads, host-to-GPU, SSD reads, selector metadata, completion summaries — against the budget, one line per method and link. Only timing runs (with a hardware config) have traffic rows. Log-log axes.
-- order: 40
SELECT r.method || ' ' || b.link  AS series,
       r.budget                   AS budget,
       AVG(b.bytes_per_step)      AS bytes_per_step,
       COUNT(*)                   AS n_runs
FROM v_runs r JOIN v_run_bytes_long b USING (run_id)
WHERE r.budget > 0
GROUP BY r.method, b.link, r.budget
ORDER BY r.method, b.link, r.budget;
