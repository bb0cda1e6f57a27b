#!/usr/bin/env bash
# test_docs.sh — the commands in the docs still work (issue 11: docs that
# cannot drift).
#
# Which docs: README.md and every Markdown file it links to (](path.md)).
# Which commands: every line of a fenced block labelled ```sh or ```bash.
#   Unlabelled blocks (config files, sample output) are not commands: label a
#   command block `sh` to have it checked.  A command continues over lines
#   ending in '\' and over an unclosed quote.
# What is checked — set by an HTML comment on the line(s) before the fence
# (README.md belongs to the integrator: markers are HTML comments only):
#   (no marker) / <!-- docs-test: help -->
#       every command is checked without running it:
#         kvsim ... (also build/kvsim, ./build/kvsim, mpirun ... kvsim):
#           `kvsim <cmd> [<sub>] --help` exits 0, and every --option the
#           doc line uses appears in that help text;
#         scripts/* and python scripts: the file exists (and `--help` of a
#           .py script exits 0);  any other program: it is on PATH.
#   <!-- docs-test: run -->
#       the block's commands are run in order, in a scratch folder that
#       mirrors the source tree (traces/, sim/, reports/, models/,
#       scripts/ linked; build/kvsim and `kvsim` = the binary under test;
#       out/ writable), and each must exit 0.  Lines that cannot run here are
#       help-checked instead, with a note: they mention ../shared, a GPU
#       (nvidia-smi, nvcc) or an UPPERCASE placeholder argument (FILE, DIR,
#       T, R.db, SWEEP.cfg, FILE...).
#   <!-- docs-test: run-lines 1,3 REASON -->
#       as run, for the listed commands of the block only (1-based, no
#       spaces in the list); the others are help-checked (for slow ones:
#       say why in REASON).
#   <!-- docs-test: skip REASON -->
#       not checked (REASON is printed).
# Fixture: before the README's blocks run, out/demo.db holds the two runs
# scripts/setup.sh makes (completion and topk at 4% on the shipped sample),
# so the README's SQL examples run against the real schema.
set -u
BIN=${KVSIM_BIN:?}; SRC=${KVSIM_SRC:?}; TMP=${KVSIM_TMP:-/tmp}/test_docs.$$
PY=${KVSIM_PYTHON:-/usr/bin/python3}
mkdir -p "$TMP"; trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0; notes=0
ok()   { echo "ok   $*"; pass=$((pass+1)); }
bad()  { echo "FAIL $*"; fail=$((fail+1)); }
note() { echo "note $*"; notes=$((notes+1)); }

# ---- the scratch folder ----------------------------------------------------------------
W=$TMP/work
mkdir -p "$W/build" "$W/out" "$TMP/bin"
for d in traces sim reports models scripts tests; do ln -s "$SRC/$d" "$W/$d"; done
ln -s "$BIN" "$W/build/kvsim"; ln -s "$BIN" "$TMP/bin/kvsim"
export PATH="$TMP/bin:$PATH"
(cd "$W" && for m in completion topk; do
   kvsim run --trace traces/sample_pandas_2k.h5 --hw sim/hw/h200_pcie5.cfg --method $m --budget-frac 0.04 \
     --sinks 4 --window 16 --db out/demo.db --quiet --no-progress || exit 1
 done) || bad "fixture: the two setup.sh runs into out/demo.db"

# ---- extract: FILE<TAB>BLOCK<TAB>MODE<TAB>N<TAB>COMMAND (newlines inside a command as \x1f) ----
docs="README.md"
for l in $(grep -o '](\([^)#]*\.md\)' "$SRC/README.md" | sed 's/^](//' | sort -u); do
  [ -f "$SRC/$l" ] && docs="$docs $l" || bad "README links $l, which does not exist"
done
extract() {
  awk -v file="$1" '
    function flush_cmd() { if (cmd != "") { n++; printf "%s\t%d\t%s\t%d\t%s\n", file, blk, mode, n, cmd; cmd = "" } }
    function quotes_open(s,   t, i, c, sq, dq) {   # 1 when s ends inside a quote
      sq = 0; dq = 0
      for (i = 1; i <= length(s); i++) { c = substr(s, i, 1)
        if (c == "\\" && !sq) { i++; continue }
        if (c == "#" && !sq && !dq && (i == 1 || substr(s, i - 1, 1) ~ /[ \t\037]/)) {   # a comment: to the end of its line
          while (i <= length(s) && substr(s, i, 1) != "\037") i++
          continue }
        if (c == "\"" && !sq) dq = !dq; else if (c == "'\''" && !dq) sq = !sq }
      return sq || dq }
    /^[ \t]*<!--[ \t]*docs-test:/ { m = $0; sub(/.*docs-test:[ \t]*/, "", m); sub(/[ \t]*-->.*/, "", m); pending = m; next }
    !inblk && /^```/ {
      lang = substr($0, 4); gsub(/[ \t]/, "", lang)
      inblk = 1; blk++; n = 0; cmd = ""
      check = (lang == "sh" || lang == "bash")
      mode = pending == "" ? "help" : pending; pending = ""
      next }
    inblk && /^```/ { flush_cmd(); inblk = 0; next }
    inblk && check {
      line = $0
      if (cmd == "" && (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/)) next
      cmd = cmd == "" ? line : cmd "\037" line
      if (line ~ /\\$/ || quotes_open(cmd)) next
      flush_cmd(); next }
    !inblk && !/^[ \t]*$/ { pending = "" }
  ' "$SRC/$1"
}

# ---- checks ----------------------------------------------------------------------------------------
help_kvsim() {   # help_kvsim WHERE CMDLINE (the part from "kvsim" on)
  local where=$1 line=$2 w1 w2 words out
  read -r _ w1 w2 _ <<<"$line"
  words=$w1
  case "$w1" in trace|bench) case "$w2" in ''|-*) ;; *) words="$w1 $w2";; esac;; esac
  out=$("$BIN" $words --help 2>&1); rc=$?
  if [ $rc -ne 0 ]; then bad "$where: 'kvsim $words --help' exits $rc: $(printf '%s' "$out" | head -2)"; return; fi
  local missing=""
  for o in $(printf '%s' "$line" | grep -oE '(^|[[:space:]])--[a-z][a-z0-9-]*' | tr -d ' \t' | sort -u); do
    [ "$o" = --help ] || printf '%s' "$out" | grep -q -- "$o\b" || missing="$missing $o"
  done
  [ -z "$missing" ] && ok "$where: kvsim $words --help knows every option used" \
    || bad "$where: 'kvsim $words --help' does not document:$missing (docs: $line)"
}
help_check() {   # help_check WHERE CMDLINE
  local where=$1 line=$2 prog
  line=$(printf '%s' "$line" | tr '\037' ' ' | sed 's/\\ / /g')
  line=$(printf '%s' "$line" | sed -E 's#^[[:space:]]*(\./)?build/kvsim#kvsim#; s#^[[:space:]]*mpirun( -n [0-9A-Z]+)? ##')
  prog=${line%% *}
  case "$prog" in
    kvsim) help_kvsim "$where" "$line";;
    scripts/*) [ -x "$SRC/$prog" ] || [ -f "$SRC/$prog" ] && ok "$where: $prog exists" || bad "$where: $prog does not exist";;
    */python3|python3|python)
      local s; s=$(printf '%s' "$line" | awk '{print $2}')
      if [ -f "$SRC/$s" ]; then
        "$PY" "$SRC/$s" --help >/dev/null 2>&1 && ok "$where: $s --help" || bad "$where: '$PY $s --help' fails"
      else bad "$where: $s does not exist"; fi;;
    *) command -v "$prog" >/dev/null 2>&1 && ok "$where: $prog is installed" || note "$where: $prog is not installed here";;
  esac
}
cannot_run() {   # prints why a line cannot run here, or nothing
  local l   # the words of the command: quoted text and comments left out
  l=$(printf '%s' "$1" | tr '\037' ' ' | sed -E "s/\"[^\"]*\"/ /g; s/'[^']*'/ /g; s/(^|[[:space:]])#.*//")
  case "$l" in *../shared*) echo "needs ../shared"; return;; esac
  printf '%s' "$l" | grep -qE 'nvidia-smi|nvcc|--gpu' && { echo "needs a GPU"; return; }
  printf '%s' "$l" | grep -qE '(^|[[:space:]=])([A-Z][A-Z0-9_]*)(\.\.\.|\.[a-z]+)?([[:space:]]|$)' \
    && { echo "has a placeholder argument"; return; }
}

n_cmds=0
for doc in $docs; do
  while IFS=$'\t' read -r file blk mode n cmd; do
    n_cmds=$((n_cmds+1))
    where="$file block $blk cmd $n"
    case "$mode" in
      skip*) note "$where: skipped (${mode#skip})"; continue;;
      run-lines*) lines=",$(printf '%s' "$mode" | awk '{print $2}'),"
                  case "$lines" in *",$n,"*) m=run;; *) m=help;; esac;;
      run) m=run;;
      help*|"") m=help;;
      *) bad "$where: unknown docs-test marker '$mode'"; continue;;
    esac
    if [ "$m" = run ]; then
      why=$(cannot_run "$cmd")
      if [ -n "$why" ]; then note "$where: $why: help check only"; m=help; fi
    fi
    if [ "$m" = help ]; then help_check "$where" "$cmd"; continue; fi
    script=$(printf '%s' "$cmd" | tr '\037' '\n')
    out=$(cd "$W" && timeout 300 bash -c "$script" 2>&1 </dev/null); rc=$?
    [ $rc -eq 0 ] && ok "$where: ran: $(printf '%s' "$script" | head -1 | cut -c1-90)" \
      || bad "$where: '$(printf '%s' "$script" | head -1 | cut -c1-90)' exits $rc: $(printf '%s' "$out" | tail -2 | tr '\n' ' ')"
  done < <(extract "$doc")
done
[ $n_cmds -gt 0 ] && ok "$n_cmds documented commands found in: $docs" || bad "no commands found in the docs"

echo "$pass passed, $fail failed, $notes notes"
[ $fail -eq 0 ]
