# error_vs_entropy.gp — one line per (method, budget): colour = method, point = budget.
set title "Attention output error vs head entropy" noenhanced
set xlabel "entropy of the true attention / log(p+1)"
set ylabel "mean relative L2 error"
set logscale y
set xrange [0:1]
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 1.5 ps 0.8 \
     lc rgb method_color(word(series, i)) pt (i % 10 + 1) title word(series, i)
