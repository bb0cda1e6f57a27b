# kvsim's graph-mode step model vs whole decode steps measured by kvsim-gpu e2e
# (predicted.csv: kvsim-gpu-host predict-e2e e2e.csv predicted.csv)
# render: gnuplot -e "set terminal pngcairo size 900,900; set output 'e2e.png'; load 'e2e.gp'" (svg likewise)
set datafile separator ','
set logscale xy
set xlabel 'measured step (us)'
set ylabel 'kvsim predicted step (us)'
set key top left
set grid
set size square
f(x) = x
set xrange [1000:200000]
set yrange [1000:200000]
set title "Whole decode steps (H200, one CUDA graph), run 9: every part measured alone,\nno key fitted to steps (24 training-quarter rows, 69 held out)"
plot f(x) with lines lc rgb '#888888' title 'y = x', \
     1.1*x with lines dt 2 lc rgb '#bbbbbb' title '+/-10 %', 0.9*x with lines dt 2 lc rgb '#bbbbbb' notitle, \
     'predicted.csv' using (strcol(13) eq 'train' ? $10 : 1/0):11 with points pt 6 ps 1.2 lc rgb '#d62728' title 'training quarter', \
     'predicted.csv' using (strcol(13) eq 'held_out' && strcol(5) eq 'full' ? $10 : 1/0):11 with points pt 7 lc rgb '#1f77b4' title 'held out: full', \
     'predicted.csv' using (strcol(13) eq 'held_out' && strcol(5) eq 'topk' ? $10 : 1/0):11 with points pt 9 lc rgb '#2ca02c' title 'held out: topk', \
     'predicted.csv' using (strcol(13) eq 'held_out' && strcol(5) eq 'quest' ? $10 : 1/0):11 with points pt 5 lc rgb '#9467bd' title 'held out: quest', \
     'predicted.csv' using (strcol(13) eq 'held_out' && strcol(5) eq 'completion' ? $10 : 1/0):11 with points pt 13 lc rgb '#ff7f0e' title 'held out: completion'
