# bytes_by_link.gp — one line per (method, link): colour = link, dashes and points = method.
set title "Bytes per decode step by link" noenhanced
set xlabel "budget B (tokens)"
set ylabel "bytes per decode step"
set logscale xy
set format y "%.0s%cB"
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 2 \
     lc rgb link_color(word(word(series, i), 2)) dt method_dt(word(series, i)) pt method_pt(word(series, i)) title word(series, i)
