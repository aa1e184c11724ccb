# shellcheck shell=bash
# Profiles for the benches (sourced): with BENCH_PERF=SECS, `perf_start NAME` samples the server
# ($SERVER_PID) for SECS seconds from 2 s into the run, `perf_end NAME` waits and prints the top
# symbols by self time (also kept as $TMP/perf-NAME.txt). `perf_wrap NAME CMD…` profiles a
# whole command (the feed load). Nothing happens without BENCH_PERF or without perf.
PERF_BG=""
perf_start() {
    [[ -n ${BENCH_PERF:-} ]] && command -v perf >/dev/null || return 0
    (sleep 2 && perf record -F 499 -g -p "$SERVER_PID" -o "$TMP/perf-$1.data" -- sleep "$BENCH_PERF" \
        >"$TMP/perf-$1.log" 2>&1) &
    PERF_BG=$!
}
perf_top() {
    timeout 180 perf report -i "$TMP/perf-$1.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -"${BENCH_PERF_TOP:-25}" | cut -c1-120 >"$TMP/perf-$1.txt" || true
    printf '==> perf %s (self time, top symbols):\n' "$1" >&2
    sed 's/^/    /' "$TMP/perf-$1.txt" >&2
}
perf_end() {
    [[ -n $PERF_BG ]] || return 0
    wait "$PERF_BG" || true
    PERF_BG=""
    perf_top "$1"
}
perf_wrap() {
    local name=$1
    shift
    if [[ -n ${BENCH_PERF:-} ]] && command -v perf >/dev/null; then
        perf record -F 499 -g -o "$TMP/perf-$name.data" -- "$@"
        local rc=$?
        perf_top "$name"
        return $rc
    fi
    "$@"
}
