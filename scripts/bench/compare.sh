#!/usr/bin/env bash
# Fogg against mosquitto, side by side, on loopback.
#
# Builds `fogg` and `fogg-bench` in release, then for every round and every
# scenario starts a fresh fogg, runs fogg-bench against it, stops it, and does
# the same with a fresh mosquitto (A B A B ...). Prints, per scenario, the
# median of each broker and the ratio fogg/mosquitto. See core/bench/README.md.
#
#   scripts/bench/compare.sh                  # 3 rounds, 5 s per throughput run
#   scripts/bench/compare.sh --quick          # 1 round, 3 s: a smoke test
#   scripts/bench/compare.sh --rounds 5 --duration 10s --scenarios pairs-q0,latency-q1
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROUNDS=3
DURATION=5s
SCENARIOS=""
OUT=""
BUILD=1
IDLE_CONNECTIONS=10000
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"
ALL_SCENARIOS="pairs-q0 pairs-q1 pairs-q2 fan-in-q0 fan-out-q0 latency-q1 idle connect-rate persist-q1 persist-q1-single"

usage() {
    cat <<EOF
usage: $0 [--quick] [--rounds N] [--duration D] [--scenarios a,b,...]
          [--idle-connections N] [--out DIR] [--no-build]

  --quick             1 round, 3 s per timed run (smoke test)
  --rounds N          rounds of A B (default 3)
  --duration D        length of each timed run, e.g. 5s (default 5s)
  --scenarios LIST    comma-separated subset of: ${ALL_SCENARIOS// /,}
  --idle-connections  connections held by the idle scenario (default 10000)
  --out DIR           keep logs and results.jsonl here (default: a new temp dir)
  --no-build          use the binaries already built
Environment: MOSQUITTO (default /usr/sbin/mosquitto), CARGO_TARGET_DIR.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1; DURATION=3s ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --scenarios) SCENARIOS="${2//,/ }"; shift ;;
        --idle-connections) IDLE_CONNECTIONS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"
for s in $SCENARIOS; do
    case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "unknown scenario: $s" >&2; exit 64 ;; esac
done
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then echo "--rounds must be a positive integer" >&2; exit 64; fi

for tool in ss jq python3 timeout; do
    command -v "$tool" >/dev/null || { echo "compare.sh needs $tool" >&2; exit 69; }
done
if [ ! -x "$MOSQUITTO" ]; then
    echo "no mosquitto at $MOSQUITTO (Debian: apt-get install mosquitto)" >&2
    exit 69
fi

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$BUILD" = 1 ]; then
    echo "== building fogg and fogg-bench (release)" >&2
    (cd "$ROOT" && cargo build --release -p fogg-bench --bin fogg-bench && cargo build --release -p fogg --bin fogg) >&2
fi
FOGG="$TARGET/release/fogg"
BENCH="$TARGET/release/fogg-bench"
for b in "$FOGG" "$BENCH"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 69; }; done

# Idle connections need file descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -z "$OUT" ]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/fogg-compare.XXXXXX")"; fi
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ] && alive "$BROKER_PID"; then
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port above the ephemeral range (32768-60999 by default),
# chosen at random and checked against every socket using it.
free_port() {
    local p i
    for i in $(seq 1 100); do
        p=$((61000 + RANDOM % 4500))
        if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# start_broker NAME PORT DIR: starts it in the background, sets BROKER_PID,
# waits until it listens.
start_broker() {
    local name="$1" port="$2" dir="$3"
    mkdir -p "$dir"
    case "$name" in
        fogg)
            mkdir -p "$dir/conf.d" "$dir/data"
            cat > "$dir/conf.d/bench.toml" <<EOF
[broker]
sys_interval = "0s"
data_dir = "$dir/data"

[[listeners]]
name = "mqtt"
bind = "127.0.0.1:$port"
EOF
            RUST_LOG=warn "$FOGG" --config-dir "$dir/conf.d" > "$dir/broker.log" 2>&1 &
            BROKER_PID=$!
            ;;
        mosquitto)
            # Persistent-session scenarios run mosquitto with its persistence
            # on (a snapshot every autosave_interval, its default of 30 min).
            local persistence=false
            case "${SCENARIO:-}" in persist-*) persistence=true ;; esac
            cat > "$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
max_queued_messages 10000
persistence $persistence
persistence_location $dir/
EOF
            chmod 644 "$dir/mosquitto.conf"
            # mosquitto started as root drops to its own user, which must be
            # able to write its persistence file here.
            chmod 777 "$dir"
            "$MOSQUITTO" -c "$dir/mosquitto.conf" > "$dir/broker.log" 2>&1 &
            BROKER_PID=$!
            ;;
    esac
    local i
    for i in $(seq 1 100); do
        if ! alive "$BROKER_PID"; then
            wait "$BROKER_PID" 2>/dev/null || true
            echo "$name exited at start; log: $dir/broker.log" >&2
            BROKER_PID=""
            return 1
        fi
        if [ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "$name did not listen on $port within 10 s" >&2
    return 1
}

# alive PID: running, not a zombie waiting to be reaped.
alive() {
    local state
    state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# stop_broker: SIGTERM, then SIGKILL after 10 s. Sets FATE to "crashed (exit
# N)" when the broker was already gone, "killed" when it ignored SIGTERM,
# else "".
stop_broker() {
    local pid="$BROKER_PID" i status=0
    BROKER_PID=""
    FATE=""
    [ -n "$pid" ] || return 0
    if ! alive "$pid"; then
        wait "$pid" 2>/dev/null || status=$?
        FATE="crashed (exit $status)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        FATE="killed"
    fi
    wait "$pid" 2>/dev/null || true
}

# bench_args SCENARIO: fogg-bench arguments (the idle broker pid is added later).
bench_args() {
    case "$1" in
        pairs-q0) echo "pairs --pairs 50 --qos 0 --duration $DURATION" ;;
        pairs-q1) echo "pairs --pairs 50 --qos 1 --inflight 100 --duration $DURATION" ;;
        # mosquitto 2.0.11 never sends QoS 2 messages queued behind its 20
        # inflight slots once the publisher pauses (see core/bench/README.md);
        # a window of 20 keeps its queue empty so the figure is a rate, not a stall.
        pairs-q2) echo "pairs --pairs 50 --qos 2 --inflight 100 --window 20 --duration $DURATION" ;;
        fan-in-q0) echo "fan-in --publishers 100 --qos 0 --duration $DURATION" ;;
        fan-out-q0) echo "fan-out --subscribers 500 --qos 0 --duration $DURATION" ;;
        latency-q1) echo "latency --rate 5000 --qos 1 --duration $DURATION" ;;
        idle) echo "idle --connections $IDLE_CONNECTIONS" ;;
        connect-rate) echo "connect-rate --concurrency 50 --duration $DURATION" ;;
        # Subscribers with clean session off: fogg writes every message to
        # its embedded store before the PUBACK.
        persist-q1) echo "pairs --pairs 50 --qos 1 --inflight 100 --persistent --duration $DURATION" ;;
        persist-q1-single) echo "pairs --pairs 1 --qos 1 --inflight 100 --persistent --duration $DURATION" ;;
    esac
}

echo "== $ROUNDS round(s), ${DURATION} runs, scenarios: $SCENARIOS" >&2
echo "== logs and raw results: $OUT" >&2
for round in $(seq 1 "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for broker in fogg mosquitto; do
            dir="$OUT/r$round/$scenario/$broker"
            port="$(free_port)"
            SCENARIO="$scenario"
            if ! start_broker "$broker" "$port" "$dir"; then
                jq -nc --arg b "$broker" --arg s "$scenario" --argjson r "$round" \
                    '{broker:$b, key:$s, round:$r, rc:-1, ok:false, metrics:{}, errors:["broker did not start"]}' >> "$RESULTS"
                continue
            fi
            args="$(bench_args "$scenario")"
            if [ "$scenario" = idle ]; then args="$args --broker-pid $BROKER_PID"; fi
            set +e
            # shellcheck disable=SC2086
            timeout 600 "$BENCH" --port "$port" --label "$broker" --json $args \
                > "$dir/bench.out" 2> "$dir/bench.err"
            rc=$?
            set -e
            stop_broker
            fate="$FATE"
            head -n 1 "$dir/bench.out" | sed "s/^/r$round /" >&2
            [ -s "$dir/bench.err" ] && sed "s/^/r$round   stderr: /" "$dir/bench.err" | head -n 5 >&2
            [ -n "$fate" ] && echo "r$round   $broker $fate (log: $dir/broker.log)" >&2
            json="$(grep '^{' "$dir/bench.out" | tail -n 1 || true)"
            if [ -z "$json" ]; then
                json='{"ok":false,"metrics":{},"errors":["no result"]}'
            fi
            printf '%s\n' "$json" | jq -c --arg b "$broker" --arg s "$scenario" \
                --argjson r "$round" --argjson rc "$rc" --arg fate "$fate" \
                '. + {broker:$b, key:$s, round:$r, rc:$rc, broker_fate:$fate}' >> "$RESULTS"
        done
    done
done

python3 - "$RESULTS" "$ROUNDS" "$DURATION" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys

path, rounds, duration = sys.argv[1], sys.argv[2], sys.argv[3]
runs = [json.loads(l) for l in open(path) if l.strip()]
# scenario key -> [(metric, better)]
shown = {
    "pairs-q0": [("delivered_per_s", "higher")],
    "pairs-q1": [("delivered_per_s", "higher")],
    "pairs-q2": [("delivered_per_s", "higher")],
    "fan-in-q0": [("delivered_per_s", "higher")],
    "fan-out-q0": [("deliveries_per_s", "higher")],
    "latency-q1": [("p50_us", "lower"), ("p99_us", "lower"), ("p999_us", "lower")],
    "idle": [("rss_per_conn_kib", "lower")],
    "connect-rate": [("connects_per_s", "higher")],
}
order = [k for k in shown if any(r.get("key") == k for r in runs)]

def med(key, broker, metric):
    vals = [r["metrics"][metric] for r in runs
            if r.get("key") == key and r.get("broker") == broker
            and metric in r.get("metrics", {}) and r.get("rc") in (0, 2)]
    return (statistics.median(vals), len(vals)) if vals else (None, 0)

def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"

print(f"\nfogg vs mosquitto: medians over {rounds} round(s), {duration} timed runs, fresh broker per run")
hdr = f"{'scenario':<13} {'metric':<18} {'fogg':>12} {'mosquitto':>12} {'fogg/mosq':>10}  better"
print(hdr)
print("-" * len(hdr))
for key in order:
    for metric, better in shown[key]:
        f, nf = med(key, "fogg", metric)
        m, nm = med(key, "mosquitto", metric)
        ratio = f"{f / m:.2f}x" if f is not None and m not in (None, 0) else "-"
        print(f"{key:<13} {metric:<18} {fmt(f):>12} {fmt(m):>12} {ratio:>10}  {better}")

# Everything that was not clean: loss, duplicates, reordering, errors, crashes.
notes = []
for r in runs:
    d = r.get("delivery") or {}
    bits = []
    for k in ("lost", "duplicates", "reordered", "invalid"):
        if d.get(k):
            bits.append(f"{k} {d[k]} of {d.get('expected')}")
    for k, v in (r.get("counters") or {}).items():
        if v:
            bits.append(f"{k} {v}")
    if r.get("errors"):
        bits.append(f"{len(r['errors'])} errors, first: {r['errors'][0]}")
    if r.get("broker_fate"):
        bits.append(f"broker {r['broker_fate']}")
    if r.get("rc") not in (0,):
        bits.append(f"exit {r.get('rc')}")
    if bits:
        notes.append(f"  r{r.get('round')} {r.get('key')} {r.get('broker')}: " + "; ".join(bits))
print("\nnot clean:" if notes else "\nevery run clean: no loss, duplicate, reordering or error")
for n in notes:
    print(n)
PY
echo "raw results: $RESULTS" >&2
