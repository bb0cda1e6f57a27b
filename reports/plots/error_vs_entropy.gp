# error_vs_entropy.gp — one line per (method, budget): colour = method, marker = budget.
set title "Attention output error vs head entropy" noenhanced
set xlabel "entropy of the true attention / log(p+1)"
set ylabel "mean relative L2 error"
set logscale y
set xrange [0:1]
set grid
# one marker per budget (the same in every method): from the "B=<n>" in the name
budget_of(s) = strstrt(s, "B=") ? real(s[strstrt(s, "B=") + 2:]) : 1
budget_pt(s) = 1 + int(log(budget_of(s)) / log(2) + 0.5) % 12
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 1.5 ps 0.8 \
     lc rgb method_color(word(series, i)) pt budget_pt(word(series, i)) title word(series, i)
