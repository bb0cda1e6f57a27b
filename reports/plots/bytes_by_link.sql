-- title: Bytes per decode step by link vs budget
-- caption: Mean bytes moved per decode step (all layers) on each link of the hierarchy — HBM reads, host-to-GPU, SSD reads, selector metadata, completion summaries — against the budget; one line per method, link and value of every other setting that varies in the database (hardware file, overrides such as bandwidth or placement, model preset, batch, features, ...: named in the legend). Averaged: traces and feature-map seeds only (n_runs in the data). Only timing runs (with a hardware config) have traffic rows. Log-log axes.
-- order: 40
SELECT r.method || ' ' || b.link || COALESCE(' ' || l.budget_label, '') AS series,
       r.budget                   AS budget,
       AVG(b.bytes_per_step)      AS bytes_per_step,
       COUNT(*)                   AS n_runs
FROM v_runs r JOIN v_run_bytes_long b USING (run_id) JOIN v_run_label l USING (run_id)
WHERE r.budget > 0
GROUP BY series, r.budget
ORDER BY series, r.budget;
