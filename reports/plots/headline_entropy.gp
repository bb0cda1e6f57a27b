# headline_entropy.gp — series "<method> <bucket>-entropy", low-entropy series first:
# dashed lines for low-entropy heads, solid for high; one colour per method.
set title "Error vs budget: broad (high-entropy) and focused (low-entropy) heads" noenhanced
set xlabel "budget B (tokens read exactly per step, layer, KV head)"
set ylabel "mean relative L2 error"
set logscale xy
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 2 \
     pt method_pt(word(series, i)) dt 1 + (strstrt(word(series, i), "low-") > 0) lc rgb method_color(word(series, i)) title word(series, i)
