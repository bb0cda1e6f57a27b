-- title: Step latency vs host-link bandwidth and SSD share
-- caption: Mean simulated latency of a decode step against the host-to-GPU link bandwidth, one line per method and share of the mid-region KV pages on SSD (1 for placement = ssd, policy.ssd_fraction for split, 0 otherwise), averaged over the sweep's other settings (budgets, traces). Needs timing runs that vary hw.links.host_to_gpu.bw_bytes_per_s (at least two values for a method).
-- order: 50
SELECT r.method || ' ssd=' || COALESCE(printf('%g', r.ssd_share), '-') AS series,
       r.host_bw_bytes_per_s / 1e9                      AS host_bw_gb_per_s,
       AVG(l.lat_mean_us)                               AS lat_mean_us,
       COUNT(*)                                         AS n_runs
FROM v_runs r JOIN v_run_latency l USING (run_id)
WHERE r.host_bw_bytes_per_s > 0
  AND r.method IN (SELECT method FROM v_runs WHERE host_bw_bytes_per_s > 0
                   GROUP BY method HAVING COUNT(DISTINCT host_bw_bytes_per_s) > 1)
GROUP BY r.method, r.ssd_share, r.host_bw_bytes_per_s
ORDER BY r.method, r.ssd_share, host_bw_gb_per_s;
