# fidelity.gp — predicted vs measured decode-step latency (attention part:
# fetch + kernels) of the GPU fidelity configurations.
# usage (from reports/fidelity): gnuplot fidelity.gp
# input: predicted.csv (kvsim-gpu-host predict: column 10 = kvsim as it was,
# the one-kernel roofline; column 12 = kvsim now, sim/kvs_gpu.c kvs_gpu_attn_ns
# with sim/hw/h200_pcie5.cfg); output: fidelity.png, fidelity.svg
set datafile separator ","
set logscale xy
set xrange [10:20000]
set yrange [5:20000]
set xlabel "measured step latency (us), NVIDIA H200"
set ylabel "predicted step latency (us)"
set key top left box opaque
set grid xtics ytics mxtics mytics lc rgb "#dddddd"
set title "kvsim-gpu fidelity: 63 configurations (Llama-3.1-8B attention layer, 128k/32k context)"
sel(p, m) = (strcol(3) eq p && strcol(4) eq m) ? 1 : NaN
do for [t in "png svg"] {
  if (t eq "png") { set terminal pngcairo size 1000,760 font ",11"; set output "fidelity.png" } \
  else { set terminal svg size 1000,760 font "Helvetica,12" dynamic; set output "fidelity.svg" }
  plot x title "y = x" lc rgb "#444444" dt 2, \
       1.2*x notitle lc rgb "#aaaaaa" dt 3, 0.8*x title "±20%" lc rgb "#aaaaaa" dt 3, \
       "predicted.csv" skip 1 using 9:($10*sel("hbm","none")) title "kvsim as it was (roofline), HBM" pt 6 ps 1.2 lc rgb "#d62728", \
       "predicted.csv" skip 1 using 9:($10*sel("host","per_page")) title "kvsim as it was (roofline), host per-page" pt 8 ps 1.2 lc rgb "#d62728", \
       "predicted.csv" skip 1 using 9:($10*sel("host","gather_kernel")) title "kvsim as it was (roofline), host gather kernel" pt 4 ps 1.2 lc rgb "#d62728", \
       "predicted.csv" skip 1 using 9:($10*sel("host","host_staged")) title "kvsim as it was (roofline), host staged" pt 12 ps 1.2 lc rgb "#d62728", \
       "predicted.csv" skip 1 using 9:($12*sel("hbm","none")) title "kvsim now (kernel chain), HBM" pt 7 ps 1.0 lc rgb "#1f77b4", \
       "predicted.csv" skip 1 using 9:($12*sel("host","per_page")) title "kvsim now (kernel chain), host per-page" pt 9 ps 1.0 lc rgb "#1f77b4", \
       "predicted.csv" skip 1 using 9:($12*sel("host","gather_kernel")) title "kvsim now (kernel chain), host gather kernel" pt 5 ps 1.0 lc rgb "#1f77b4", \
       "predicted.csv" skip 1 using 9:($12*sel("host","host_staged")) title "kvsim now (kernel chain), host staged" pt 13 ps 1.0 lc rgb "#1f77b4"
  unset output
}
