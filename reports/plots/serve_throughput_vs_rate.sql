-- title: Serving throughput vs arrival rate
-- caption: kvsim serve runs: output tokens per second (solid) and goodput under the workload's SLOs (tokens/s of requests that met every SLO, dashed) against the request arrival rate (the Poisson rate; for listed arrivals (n-1)/their span). One point per run, one line per method, hardware, KV capacity and HBM-full policy; runs that differ in anything else (workload, model) are separate points on the same line, not averaged. Needs kind = 'serve' runs at two or more rates (reports/workloads/sweep.sh).
-- order: 80
SELECT r.method || ' ' || COALESCE(json_extract(r.config_json, '$.hw.name'), '?')
         || ' kv=' || printf('%.0fGB', cap.value / 1e9)
         || ' ' || COALESCE(json_extract(r.config_json, '$.workload.scheduler.hbm_full'), '?') AS series,
       rate.value AS arrival_rate_per_s,
       thr.value  AS throughput_tok_per_s,
       good.value AS goodput_tok_per_s,
       r.run_id
FROM runs r
JOIN run_values rate ON rate.run_id = r.run_id AND rate.name = 'serve_arrival_rate_per_s'
JOIN run_values thr  ON thr.run_id  = r.run_id AND thr.name  = 'serve_throughput_tok_per_s'
JOIN run_values good ON good.run_id = r.run_id AND good.name = 'serve_goodput_tok_per_s'
JOIN run_values cap  ON cap.run_id  = r.run_id AND cap.name  = 'serve_kv_capacity_bytes'
WHERE r.status = 'complete' AND r.kind = 'serve' AND rate.value IS NOT NULL
ORDER BY series, arrival_rate_per_s, r.run_id;
