# headline_entropy.gp — series "<method> <bucket>-entropy": solid lines for
# high-entropy heads, dashed for low-entropy heads; one colour per method.
set title "Error vs budget: broad (high-entropy) and focused (low-entropy) heads" noenhanced
set xlabel "budget B (tokens read exactly per step, layer, KV head)"
set ylabel "mean relative L2 error"
set logscale xy
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 2 pt 7 \
     dt (strstrt(word(series, i), "low-") ? 2 : 1) title word(series, i)
