-- title: p99 time between tokens vs offloaded share of the KV cache
-- caption: kvsim serve runs: the 99th percentile (nearest rank) of every time-between-tokens of the run against the time-weighted share of KV bytes that lived off the GPU (host or SSD). One point per run, one series per method and hardware; points are not averaged. Runs with HBM-full policy queue or preempt have share 0.
-- order: 81
SELECT r.method || ' ' || COALESCE(json_extract(r.config_json, '$.hw.name'), '?') AS series,
       off.value AS offload_frac,
       tbt.value AS tbt_p99_ms,
       r.run_id
FROM runs r
JOIN run_values off ON off.run_id = r.run_id AND off.name = 'serve_offload_frac'
JOIN run_values tbt ON tbt.run_id = r.run_id AND tbt.name = 'serve_tbt_p99_ms'
WHERE r.status = 'complete' AND r.kind = 'serve'
ORDER BY series, offload_frac, r.run_id;
