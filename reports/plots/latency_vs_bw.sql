-- title: Step latency vs host-link bandwidth
-- caption: Mean simulated latency of a decode step against the host-to-GPU link bandwidth; one line per method and value of every other setting that varies in the database (budget, placement and SSD fraction, hardware file, cache, model preset, ...: named in the legend). Averaged: traces and feature-map seeds only (n_runs in the data). Needs timing runs at two or more host bandwidths for a method.
-- order: 50
SELECT r.method || COALESCE(' ' || l.bw_label, '')   AS series,
       r.host_bw_bytes_per_s / 1e9                      AS host_bw_gb_per_s,
       AVG(t.lat_mean_us)                               AS lat_mean_us,
       COUNT(*)                                         AS n_runs
FROM v_runs r JOIN v_run_latency t USING (run_id) JOIN v_run_label l USING (run_id)
WHERE r.host_bw_bytes_per_s > 0
  AND r.method IN (SELECT method FROM v_runs WHERE host_bw_bytes_per_s > 0
                   GROUP BY method HAVING COUNT(DISTINCT host_bw_bytes_per_s) > 1)
GROUP BY series, r.host_bw_bytes_per_s
ORDER BY series, host_bw_gb_per_s;
