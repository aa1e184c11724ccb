#!/usr/bin/env bash
# Shared by ops/bench/station and ops/bench/soak (sourced, never run): temp dir and cleanup, wrk,
# the release build, port and readiness helpers, wrk runs parsed into RPS/P50/P99/ERRS, and
# seed_ledger, which fills a store with BENCH_POSITIONS generated positions.
# The caller sets ROOT, LUA, BENCH_NAME, BENCH_PORT, BENCH_THREADS, ORG, BROKER, STATION, KEY.

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- temp dir, children, cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mpay-bench-$BENCH_NAME.XXXXXX")
SERVER_PID=""
PROBLEMS=()

stop_server() { # stop_server NAME: SIGTERM, wait up to 40 s, then SIGKILL
    local name=$1 pid=$SERVER_PID i rc=0
    [[ -n $pid ]] || return 0
    SERVER_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 400; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            PROBLEMS+=("$name did not stop within 40 s of SIGTERM: killed")
            kill -KILL "$pid" 2>/dev/null || true
        fi
    else
        PROBLEMS+=("$name had exited before SIGTERM (crash?)")
    fi
    wait "$pid" 2>/dev/null || rc=$?
    ((rc == 0)) || PROBLEMS+=("$name exited with status $rc")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_server "server (at exit)" 2>/dev/null || true
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
if ! command -v cargo >/dev/null; then
    [[ -x $HOME/.cargo/bin/cargo ]] && PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"
fi
command -v python3 >/dev/null || die "python3 is needed to generate the ledger export"
if ! command -v wrk >/dev/null; then
    SUDO=""
    if (($(id -u) != 0)); then
        command -v sudo >/dev/null || die "wrk is missing and I am not root: apt-get install wrk"
        SUDO=sudo
    fi
    log "installing wrk (apt-get install -y wrk)"
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >"$TMP/apt.log" 2>&1; then
        $SUDO apt-get update >>"$TMP/apt.log" 2>&1 || true
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >>"$TMP/apt.log" 2>&1 ||
            { cat "$TMP/apt.log" >&2; die "cannot install wrk"; }
    fi
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET == /* ]] || TARGET="$ROOT/$TARGET"
MPAY="$TARGET/release/mpay"
BASELINE="$TARGET/release/examples/bench_station_baseline"
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building (release; the first build takes several minutes)"
    (cd "$ROOT" && cargo build --release -p mpay --bin mpay &&
        cargo build --release -p mpay-web --example bench_station_baseline) || die "build failed"
fi
[[ -x $MPAY && -x $BASELINE ]] || die "missing $MPAY or $BASELINE (build them first)"

# ---------------------------------------------------------------- helpers
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }
http_status() { # http_status PORT PATH: status of a GET, "" on failure
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
        read -r _ code _ <&3 && echo "$code"' _ "$1" "$2" 2>/dev/null || true
}
wait_ready() { # wait_ready NAME PORT PATH [STATUS-REGEX]: until a GET of PATH answers
    local i want=${4:-'^200$'}
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || die "$1 exited during start-up: $(tail -n 20 "$TMP/$1.log")"
        [[ $(http_status "$2" "$3") =~ $want ]] && return 0
        sleep 0.1
    done
    die "$1 not ready after 60 s: $(tail -n 20 "$TMP/$1.log")"
}
check_alive() { kill -0 "$SERVER_PID" 2>/dev/null || die "$1 died during the run: $(tail -n 30 "$TMP/$1.log")"; }

declare -A RPS P50 P99 ERRS CONNS
# run_wrk NAME SECS CONNS SCRIPT URL ARGS...: wrk run; BENCH_RESULT parsed into RPS/P50/P99/ERRS.
run_wrk() {
    local name=$1 secs=$2 conns=$3 script=$4 url=$5 out line kv k v threads=$BENCH_THREADS
    shift 5
    ((conns < threads)) && threads=$conns
    out="$TMP/$(tr -c "A-Za-z0-9\n" _ <<<"$name").wrk"
    wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 10s --latency \
        -s "$LUA/$script" "$url" -- "$@" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed ($name)"; }
    [[ ${BENCH_VERBOSE:-0} == 1 ]] && sed 's/^/    /' "$out" >&2
    grep '^BENCH_ERROR' "$out" | sed "s|^BENCH_ERROR|  [$name]|" >&2 || true
    line=$(grep '^BENCH_RESULT' "$out") || { cat "$out" >&2; die "no result from wrk ($name)"; }
    CONNS[$name]=$conns
    for kv in ${line#BENCH_RESULT }; do
        k=${kv%%=*} v=${kv#*=}
        case $k in
            rps) RPS[$name]=$v ;;
            p50_ms) P50[$name]=$v ;;
            p99_ms) P99[$name]=$v ;;
            non2xx) ERRS[$name]=$v ;;
            sockerr) ERRS[$name]=$((${ERRS[$name]} + v)) ;;
        esac
    done
    log "$(printf '%-20s %10s req/s  p50 %7s ms  p99 %7s ms  not-OK %s  (%s conns)' "$name" "${RPS[$name]}" \
        "${P50[$name]}" "${P99[$name]}" "${ERRS[$name]}" "$conns")"
    if ((${ERRS[$name]} > 0)) && [[ $name != warmup* ]]; then
        PROBLEMS+=("$name: ${ERRS[$name]} answers not HTTP 200 + outcome OK (see lines above)")
    fi
}
# half_rate NAME MAX_RPS P50_MS SCRIPT URL ARGS...: rate-limited run at about MAX_RPS/2 (wrk has
# no rate option; wrk2 is not packaged). Each connection waits a random 0..10 ms (mean 5 ms) after
# each answer (wrk delay(), jittered so the connections do not fire in bursts); connections =
# target x (5 ms + the p50 measured at full load). The achieved rate is printed next to p99.
half_rate() {
    local name=$1 max=$2 p50=$3 target conns
    shift 3
    target=$(awk -v m="$max" 'BEGIN { printf "%d", m / 2 }')
    conns=$(awk -v t="$target" -v l="$p50" 'BEGIN { c = int(t * (5 + l) / 1000 + 0.5); if (c < 2) c = 2; printf "%d", c }')
    log "$name: target $target req/s with $conns connections, 1 request per (5 ms mean pause + latency) each"
    BENCH_DELAY_MS=5 run_wrk "$name" "$BENCH_SECS" "$conns" "$@"
}


# seed_ledger: writes $TMP/mpay.toml and imports BENCH_POSITIONS positions into $TMP/data;
# sets IMPORT_SECS and STORE_BYTES.
seed_ledger() {
# ---------------------------------------------------------------- the ledger
HASH=$("$MPAY" apikey hash "$KEY" | tail -n 1)
[[ $HASH =~ ^[0-9a-f]{64}$ ]] || die "unexpected output of 'mpay apikey hash': $HASH"
mkdir -p "$TMP/data"
cat >"$TMP/mpay.toml" <<EOF
[node]
id = "bench"
data_dir = "$TMP/data"

[http]
# the load generator is one client address: no per-IP connection limit (issue 9.6)
max_connections_per_ip = 0

[broker]
fiscal_code = "$BROKER"

[[stations]]
id = "$STATION"
organizations = ["$ORG"]

[[organizations]]
fiscal_code = "$ORG"
name = "Comune di Borgo Demo"
aux_digit = 3
segregation_code = 12
ibans = ["IT47D0103002600000061234567"]
api_key_hashes = ["$HASH"]
EOF

# one real position through the REST API, exported as the template of the generated ones
PORT=$(free_port "$BENCH_PORT")
MPAY_LOG=warn "$MPAY" serve --config "$TMP/mpay.toml" --bind "127.0.0.1:$PORT" >"$TMP/mpay-seed.log" 2>&1 &
SERVER_PID=$!
wait_ready mpay-seed "$PORT" /health/ready
python3 - "$PORT" "$ORG" "$KEY" <<'PY' || die "cannot create the template position"
import json, sys, urllib.request
port, org, key = sys.argv[1:4]
body = {"iupd": "BENCH-TEMPLATE", "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune di Borgo Demo", "paymentOption": [{"amount": 12050, "description": "TARI 2026",
        "isPartialPayment": False, "dueDate": "2026-12-31", "transfer": [{"idTransfer": "1", "amount": 12050,
        "remittanceInformation": "TARI 2026", "category": "9/0101108TS/", "iban": "IT47D0103002600000061234567"}]}]}
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/organizations/{org}/debtpositions?toPublish=true",
                             data=json.dumps(body).encode(), method="POST",
                             headers={"Content-Type": "application/json", "Ocp-Apim-Subscription-Key": key})
with urllib.request.urlopen(req) as r:
    assert r.status == 201, r.status
PY
stop_server mpay-seed
"$MPAY" store export --positions --config "$TMP/mpay.toml" --out "$TMP/template.jsonl" >/dev/null
rm -rf "$TMP/data" && mkdir -p "$TMP/data"

log "generating $BENCH_POSITIONS positions"
t0=$(date +%s.%N)
python3 - "$TMP/template.jsonl" "$TMP/positions.jsonl" "$BENCH_POSITIONS" <<'PY' || die "generation failed"
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [l for l in open(src) if l.strip()]
pos = [l for l in lines if json.loads(l).get("kind") == "position"]
assert len(pos) == 1, f"expected one position in the export, got {len(pos)}"
line = pos[0].rstrip("\n")
p = json.loads(line)["position"]
def find(o, key):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == key: return v
            r = find(v, key)
            if r is not None: return r
    if isinstance(o, list):
        for v in o:
            r = find(v, key)
            if r is not None: return r
nav, iuv, iupd = find(p, "nav"), find(p, "iuv"), find(p, "iupd")
assert nav and iuv and iupd and nav[1:] == iuv, (nav, iuv, iupd)
t = line.replace(nav, "\0N\0").replace(iuv, "\0I\0").replace(f'"{iupd}"', '"\0U\0"')
parts = t.split("\0")
with open(dst, "w") as out:
    buf = []
    for i in range(n):
        digits = "312" + "9" + f"{i:012d}"
        v = digits + f"{int(digits) % 93:02d}"
        buf.append("".join({"N": v, "I": v[1:], "U": f"BENCH-{i}"}.get(x, x) for x in parts))
        if len(buf) == 10000:
            out.write("\n".join(buf)); out.write("\n"); buf = []
    if buf:
        out.write("\n".join(buf)); out.write("\n")
PY
log "generated in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s ($(du -h "$TMP/positions.jsonl" | cut -f1)); importing"
t0=$(date +%s.%N)
"$MPAY" store import --config "$TMP/mpay.toml" "$TMP/positions.jsonl" >"$TMP/import.log" 2>&1 ||
    { cat "$TMP/import.log" >&2; die "import failed"; }
IMPORT_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "imported $BENCH_POSITIONS positions in ${IMPORT_SECS}s ($(du -sh "$TMP/data" | cut -f1) on disk)"
STORE_BYTES=$(du -sb "$TMP/data" | cut -f1)
rm -f "$TMP/positions.jsonl"
}
