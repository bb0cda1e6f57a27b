-- title: Pareto front: error vs latency
-- caption: Every complete timing run as its own point (median step latency, mean relative L2 error): nothing is averaged. One colour per method; the line joins the Pareto front — the runs no other run beats on both error and latency (view v_pareto), over all settings in the database. Log axes.
-- order: 60
SELECT series, lat_p50_us, err_mean, budget FROM (
  SELECT method AS series, 0 AS ord, lat_p50_us, err_mean, budget
  FROM v_run_summary WHERE err_mean > 0 AND lat_p50_us > 0
  UNION ALL
  SELECT 'Pareto front', 1, lat_p50_us, err_mean, budget
  FROM v_pareto WHERE err_mean > 0 AND lat_p50_us > 0)
ORDER BY ord, series, lat_p50_us;
