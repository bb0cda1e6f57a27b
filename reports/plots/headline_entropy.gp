# headline_entropy.gp — series "<method> <bucket>-entropy", low-entropy series first:
# dashed lines for low-entropy heads, solid for high; one colour per method; markers
# tell apart the lines of one method that differ in other settings.
set title "Error vs budget: broad (high-entropy) and focused (low-entropy) heads" noenhanced
set xlabel "budget B (tokens read exactly per step, layer, KV head)"
set ylabel "mean relative L2 error"
set logscale xy
set grid
set key outside right noenhanced
plot for [i=1:nseries] datafile index (i-1) using 2:3 with linespoints lw 2 \
     pt 1 + (i - 1) % 13 dt 1 + (strstrt(word(series, i), "low-") > 0) lc rgb method_color(word(series, i)) title word(series, i)
