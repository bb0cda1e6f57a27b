# latency_vs_bw.gp — one line per method and the settings that vary.
set title "Decode step latency vs host-to-GPU bandwidth" noenhanced
set xlabel "host-to-GPU link bandwidth (GB/s)"
set ylabel "mean step latency (us)"
set logscale xy
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 2 \
     lc rgb method_color(word(series, i)) pt method_pt(word(series, i)) dt series_dt(i) title word(series, i)
