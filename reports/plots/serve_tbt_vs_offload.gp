# serve_tbt_vs_offload.gp — one point per run, one colour per series.
set title "p99 time between tokens vs offloaded KV share" noenhanced
set xlabel "KV bytes off the GPU (time-weighted share)"
set ylabel "p99 time between tokens (ms)"
set logscale y
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with points ps 1.5 \
     lc rgb method_color(word(series, i)) pt method_pt(word(series, i)) title word(series, i)
