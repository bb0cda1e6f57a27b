# style.gp — loaded by `kvsim report` before every plot script (it has no
# .sql, so it is not a plot).  Colours by method and by link, so that one
# method looks the same in every plot.  s: a series name that contains the
# method or link name (e.g. "topk low-entropy", "quest host_to_gpu").
# The method is the FIRST word of a series name (the settings that follow,
# e.g. "select=topk", never change its colour); a link is matched anywhere, so
# pass link_color the link's own word.
method_color_w(s) = strstrt(s, "completion") ? "#d62728" : strstrt(s, "topk") ? "#1f77b4" : \
                  strstrt(s, "quest") ? "#2ca02c" : strstrt(s, "window") ? "#ff7f0e" : \
                  strstrt(s, "full") ? "#000000" : "#7f7f7f"
method_pt_w(s)    = strstrt(s, "completion") ? 7 : strstrt(s, "topk") ? 5 : strstrt(s, "quest") ? 9 : \
                  strstrt(s, "window") ? 11 : 13
link_color(s)   = strstrt(s, "hbm_read") ? "#7f7f7f" : strstrt(s, "host_to_gpu") ? "#1f77b4" : \
                  strstrt(s, "gpu_to_host") ? "#17becf" : strstrt(s, "ssd_to_host") ? "#8c564b" : \
                  strstrt(s, "ssd_to_gpu") ? "#e377c2" : strstrt(s, "meta") ? "#2ca02c" : \
                  strstrt(s, "summary") ? "#d62728" : "#000000"
method_dt_w(s)    = strstrt(s, "completion") ? 1 : strstrt(s, "topk") ? 2 : strstrt(s, "quest") ? 4 : \
                  strstrt(s, "window") ? 5 : 3
method_color(s) = method_color_w(word(s, 1))
method_pt(s)    = method_pt_w(word(s, 1))
method_dt(s)    = method_dt_w(word(s, 1))
# lines that share a method (other settings) differ in dashes and markers:
# i-th series -> dash pattern 1..5, marker offset
series_dt(i)    = 1 + (i - 1) % 5
