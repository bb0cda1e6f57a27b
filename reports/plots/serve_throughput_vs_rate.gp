# serve_throughput_vs_rate.gp — throughput (solid) and goodput (dashed) per series.
set title "Serving throughput vs arrival rate" noenhanced
set xlabel "arrival rate (requests/s)"
set ylabel "tokens/s"
set logscale x
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 2 \
       lc rgb method_color(word(series, i)) pt method_pt(word(series, i)) dt 1 title word(series, i), \
     for [i=1:nseries] datafile index (i-1) using 2:4 with linespoints lw 1 \
       lc rgb method_color(word(series, i)) pt method_pt(word(series, i)) dt 2 title word(series, i)." goodput"
