# pareto.gp — series: one per method (points), the last is the front (line).
set title "Error vs latency, with the Pareto front" noenhanced
set xlabel "median decode step latency (us)"
set ylabel "mean relative L2 error"
set logscale xy
set grid
set key outside right noenhanced
plot for [i=1:nseries-1] datafile index (i-1) using 2:3 with points pt method_pt(word(series, i)) ps 1.2 \
     lc rgb method_color(word(series, i)) title word(series, i), \
     datafile index (nseries-1) using 2:3 with steps lw 2 lc rgb "black" title word(series, nseries)
