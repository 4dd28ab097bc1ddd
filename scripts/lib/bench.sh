# Sourced by scripts/bench, scripts/bench-camera and scripts/bench-ingest
# (from the repository's root): the one results table, and the program
# that does their sums (bench-report, bench/src/report/: medians, ratios,
# verdicts, the rows and the Markdown table).
#
# SEALCAM_BENCH_TABLE names the file rows go to; scripts/bench sets it, so
# that every part ends up in one table. A part run alone prints its own.

bench_own_table=false
if [ -z "${SEALCAM_BENCH_TABLE:-}" ]; then
  SEALCAM_BENCH_TABLE=$(mktemp)
  bench_own_table=true
fi
export SEALCAM_BENCH_TABLE

cargo build --release --locked --quiet -p sealcam-bench --bin bench-report
bench_report_bin=$(pwd)/target/release/bench-report
# report SUBCOMMAND ARGS...: see `bench-report --help`.
report() { "$bench_report_bin" "$@"; }
# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() { report free-port; }

# took: for the log, how long the step before took (since the last call, or
# since this file was sourced).
bench_step_started=$(date +%s)
took() {
  local now
  now=$(date +%s)
  echo "   (took $((now - bench_step_started)) s)"
  bench_step_started=$now
}

# print_table TITLE: the rows so far as a Markdown table, with the date and
# the machine, ready for docs/ref/benchmarks.md.
print_table() {
  report table "$1: $(date -u +%Y-%m-%d), $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p')"
}

# Called at the end of a part: prints the table if the part runs alone.
finish_part() {
  if $bench_own_table; then
    print_table "$1"
    rm -f "$SEALCAM_BENCH_TABLE"
  fi
}
