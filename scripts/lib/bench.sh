# Sourced by scripts/bench, scripts/bench-camera and scripts/bench-ingest:
# the rows of the one results table, and the statistics they share.
#
# SEALCAM_BENCH_TABLE names the file rows go to; scripts/bench sets it, so
# that every part ends up in one table. A part run alone prints its own.

bench_own_table=false
if [ -z "${SEALCAM_BENCH_TABLE:-}" ]; then
  SEALCAM_BENCH_TABLE=$(mktemp)
  bench_own_table=true
fi
export SEALCAM_BENCH_TABLE

# took: for the log, how long the step before took (since the last call, or
# since this file was sourced).
bench_step_started=$(date +%s)
took() {
  local now
  now=$(date +%s)
  echo "   (took $((now - bench_step_started)) s)"
  bench_step_started=$now
}

# row FIGURE RESULT GOAL VERDICT: one row of the table, echoed as it comes.
row() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$SEALCAM_BENCH_TABLE"
  echo "   $1: $2 (goal: $3; $4)"
}

# median V...: "median min max" of the values, three decimals.
median() {
  python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f} {min(v):.3f} {max(v):.3f}")' "$@"
}

# verdict VALUE OP LIMIT: "met" or "not met" (OP is <= or >=).
verdict() {
  python3 -c 'import sys; v, op, l = float(sys.argv[1]), sys.argv[2], float(sys.argv[3]); print("met" if (v <= l if op == "<=" else v >= l) else "not met")' "$1" "$2" "$3"
}

# print_table TITLE: the rows so far as a Markdown table, with the date and
# the machine, ready for docs/benchmarks.md.
print_table() {
  echo
  echo "== $1: $(date -u +%Y-%m-%d), $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p')"
  echo
  python3 - "$SEALCAM_BENCH_TABLE" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| figure | result | goal | |")
print("| --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
}

# Called at the end of a part: prints the table if the part runs alone.
finish_part() {
  if $bench_own_table; then
    print_table "$1"
    rm -f "$SEALCAM_BENCH_TABLE"
  fi
}
