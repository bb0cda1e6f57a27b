# error_vs_budget.gp — one line per series: method and the settings that vary (colour = method).
set title "Attention output error vs budget" noenhanced
set xlabel "budget B (tokens read exactly per step, layer, KV head)"
set ylabel "mean relative L2 error"
set logscale xy
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 2 pt method_pt(word(series, i)) \
     dt series_dt(i) lc rgb method_color(word(series, i)) title word(series, i)
