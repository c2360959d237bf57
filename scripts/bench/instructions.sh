#!/usr/bin/env bash
# Instructions per delivered message: a figure that does not move with the
# machine's load (issue 4).
#
# Runs the broker under `valgrind --tool=callgrind --cache-sim=no` (this VM
# has no hardware counters for `perf stat -e instructions`), drives a fixed
# amount of work through it with `fogg-bench --messages N`, and reads the
# instructions the broker executed (callgrind's `totals:`). The same run with
# `--messages 0` (same connections and subscriptions, no message) is the
# idle baseline, subtracted, so the figure is the cost of the messages only:
#
#   instructions per message = (Ir(run) - Ir(idle run)) / messages delivered
#
# Each measurement is repeated (--repeat, default 3; fresh broker every
# time); the table shows the median and the range.
#
#   scripts/bench/instructions.sh                       # fogg (memory store)
#   scripts/bench/instructions.sh --brokers fogg,relay,mosquitto
#   scripts/bench/instructions.sh --scenarios pairs-q1 --repeat 5 --no-build
#
# Scenarios (defaults; --messages / --fanout-messages change the counts):
#   pairs-q0    pairs --pairs 10 --qos 0 --messages 2000        (20 000 deliveries)
#   pairs-q1    pairs --pairs 10 --qos 1 --inflight 100 --messages 2000
#   pairs-q2    pairs --pairs 10 --qos 2 --inflight 100 --window 20 --messages 2000 (not by default)
#   fan-out-q0  fan-out --subscribers 100 --qos 0 --messages 200 (20 000 deliveries)
#
# Brokers: `fogg` is the release build with `[storage] backend = "memory"`
# (compare.sh's fogg-memory); `fogg-default` is fogg with its default store;
# `relay` is fogg-relay; `mosquitto` is Debian's, persistence off.
# Needs valgrind, ss, jq, python3, timeout. See core/bench/README.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
REPEAT=3
OUT=""
BUILD=1
BROKERS="fogg"
MESSAGES=2000
FANOUT_MESSAGES=200
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"
ALL_SCENARIOS="pairs-q0 pairs-q1 pairs-q2 fan-out-q0"
SCENARIOS="pairs-q0 pairs-q1 fan-out-q0"

usage() {
    cat <<EOF
usage: $0 [--scenarios a,b,...] [--brokers a,b,...] [--repeat N]
          [--messages N] [--fanout-messages N] [--out DIR] [--no-build]

  --scenarios LIST     subset of: ${ALL_SCENARIOS// /,} (default ${SCENARIOS// /,})
  --brokers LIST       fogg (memory store, default), fogg-default, relay, mosquitto
  --repeat N           measurements per scenario and broker (default 3)
  --messages N         messages per publisher in the pairs scenarios (default 2000)
  --fanout-messages N  messages of the fan-out publisher (default 200)
  --out DIR            keep logs, callgrind files and results.jsonl here
  --no-build           use the binaries already built
Environment: CARGO_TARGET_DIR, MOSQUITTO (default /usr/sbin/mosquitto).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --scenarios) SCENARIOS="${2//,/ }"; shift ;;
        --brokers) BROKERS="${2//,/ }"; shift ;;
        --repeat) REPEAT="$2"; shift ;;
        --messages) MESSAGES="$2"; shift ;;
        --fanout-messages) FANOUT_MESSAGES="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done
for s in $SCENARIOS; do
    case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "unknown scenario: $s" >&2; exit 64 ;; esac
done
for b in $BROKERS; do
    case "$b" in
        fogg|fogg-default|relay|mosquitto) ;;
        *) echo "unknown broker: $b (fogg, fogg-default, relay, mosquitto)" >&2; exit 64 ;;
    esac
done
for n in "$REPEAT" "$MESSAGES" "$FANOUT_MESSAGES"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "counts must be positive integers, not $n" >&2; exit 64; }
done
for tool in valgrind ss jq python3 timeout; do
    command -v "$tool" >/dev/null || { echo "instructions.sh needs $tool" >&2; exit 69; }
done
case " $BROKERS " in
    *" mosquitto "*) [ -x "$MOSQUITTO" ] || { echo "no mosquitto at $MOSQUITTO" >&2; exit 69; } ;;
esac

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$BUILD" = 1 ]; then
    echo "== building fogg, fogg-bench and fogg-relay (release)" >&2
    (cd "$ROOT" && cargo build --release -p fogg-bench --bins && cargo build --release -p fogg --bin fogg) >&2
fi
FOGG="$TARGET/release/fogg"
BENCH="$TARGET/release/fogg-bench"
RELAY="$TARGET/release/fogg-relay"
for b in "$FOGG" "$BENCH" "$RELAY"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 69; }; done

if [ -z "$OUT" ]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/fogg-instructions.XXXXXX")"; fi
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

# start_broker NAME PORT DIR: the broker under callgrind, writing DIR/callgrind.out.
start_broker() {
    local name="$1" port="$2" dir="$3" i
    mkdir -p "$dir"
    local vg=(valgrind --tool=callgrind --cache-sim=no --callgrind-out-file="$dir/callgrind.out")
    case "$name" in
        fogg|fogg-default)
            mkdir -p "$dir/conf.d" "$dir/data"
            cat > "$dir/conf.d/10-bench.toml" <<EOF
[broker]
sys_interval = "0s"
data_dir = "$dir/data"

[[listeners]]
name = "mqtt"
bind = "127.0.0.1:$port"
kind = "tcp"
EOF
            if [ "$name" = fogg ]; then
                printf '[storage]\nbackend = "memory"\n' > "$dir/conf.d/50-variant.toml"
            fi
            RUST_LOG=warn "${vg[@]}" "$FOGG" --config-dir "$dir/conf.d" > "$dir/broker.log" 2>&1 &
            ;;
        relay)
            "${vg[@]}" "$RELAY" --listen "127.0.0.1:$port" > "$dir/broker.log" 2>&1 &
            ;;
        mosquitto)
            # `user root`: mosquitto started as root would otherwise switch to
            # its own user, which cannot write the callgrind file valgrind opened.
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 10000\npersistence false\nuser root\n' \
                "$port" > "$dir/mosquitto.conf"
            "${vg[@]}" "$MOSQUITTO" -c "$dir/mosquitto.conf" > "$dir/broker.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    # valgrind starts the broker tens of times slower: up to 2 minutes.
    for i in $(seq 1 1200); do
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
    echo "$name did not listen on $port within 120 s" >&2
    return 1
}

# stop_broker: SIGTERM and wait (callgrind writes its file at exit), SIGKILL
# after 2 minutes. Returns non-zero when the broker had to be killed.
stop_broker() {
    local pid="$BROKER_PID" i
    BROKER_PID=""
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 1200); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 1
    fi
    wait "$pid" 2>/dev/null || true
}

bench_args() {
    local n="$2"
    case "$1" in
        pairs-q0) echo "pairs --pairs 10 --qos 0 --messages $n" ;;
        pairs-q1) echo "pairs --pairs 10 --qos 1 --inflight 100 --messages $n" ;;
        # --window 20 as in compare.sh: mosquitto stalls QoS 2 messages queued
        # behind its 20 inflight slots (core/bench/README.md).
        pairs-q2) echo "pairs --pairs 10 --qos 2 --inflight 100 --window 20 --messages $n" ;;
        fan-out-q0) echo "fan-out --subscribers 100 --qos 0 --messages $n" ;;
    esac
}

# measure BROKER SCENARIO REP KIND (run|idle): one broker start, one
# fogg-bench run, one stop; appends a line to results.jsonl.
measure() {
    local broker="$1" scenario="$2" rep="$3" kind="$4"
    local n="$MESSAGES" dir port args rc ir killed=false json
    [ "$scenario" = fan-out-q0 ] && n="$FANOUT_MESSAGES"
    [ "$kind" = idle ] && n=0
    dir="$OUT/$broker/$scenario/$rep-$kind"
    port="$(free_port)"
    if ! start_broker "$broker" "$port" "$dir"; then
        jq -nc --arg b "$broker" --arg s "$scenario" --arg k "$kind" --argjson r "$rep" \
            '{broker:$b, key:$s, kind:$k, rep:$r, ok:false, errors:["broker did not start"]}' >> "$RESULTS"
        return 0
    fi
    args="$(bench_args "$scenario" "$n")"
    # Time limits only: the run ends once every message is delivered.
    set +e
    # shellcheck disable=SC2086
    timeout 900 "$BENCH" --port "$port" --label "$broker" --json $args \
        --duration 600s --drain 120s --stall 30s > "$dir/bench.out" 2> "$dir/bench.err"
    rc=$?
    set -e
    stop_broker || killed=true
    ir="$(sed -n 's/^totals: *//p' "$dir/callgrind.out" 2>/dev/null | head -n 1)"
    [ -n "$ir" ] || ir=null
    json="$(grep '^{' "$dir/bench.out" | tail -n 1 || true)"
    [ -n "$json" ] || json='{"ok":false,"errors":["no result"]}'
    printf '%s\n' "$json" | jq -c --arg b "$broker" --arg s "$scenario" --arg k "$kind" \
        --argjson r "$rep" --argjson rc "$rc" --argjson ir "$ir" --argjson killed "$killed" \
        '. + {broker:$b, key:$s, kind:$k, rep:$r, rc:$rc, instructions:$ir, killed:$killed}' >> "$RESULTS"
    printf '%s %s #%s %-4s: %s instructions, %s\n' "$broker" "$scenario" "$rep" "$kind" "$ir" \
        "$(head -n 1 "$dir/bench.out" | sed 's/^.*| //')" >&2
}

LOAD_BEFORE="$(uptime)"
echo "== brokers: $BROKERS; scenarios: $SCENARIOS; $REPEAT repeat(s)" >&2
echo "== load before: $LOAD_BEFORE" >&2
echo "== logs, callgrind files and results: $OUT" >&2
for rep in $(seq 1 "$REPEAT"); do
    for scenario in $SCENARIOS; do
        for broker in $BROKERS; do
            measure "$broker" "$scenario" "$rep" idle
            measure "$broker" "$scenario" "$rep" run
        done
    done
done
LOAD_AFTER="$(uptime)"

python3 - "$RESULTS" "$BROKERS" "$SCENARIOS" "$REPEAT" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys

path, brokers, scenarios, repeat = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
runs = [json.loads(l) for l in open(path) if l.strip()]
print(f"\ninstructions per message under callgrind: (Ir(run) - Ir(idle run)) / count; "
      f"median [min - max] of {repeat} repeat(s)")
print(f"load before: {sys.argv[5].strip()}")
print(f"load after:  {sys.argv[6].strip()}")
hdr = f"{'scenario':<11} {'broker':<13} {'per delivery':>24} {'per publish':>24} {'deliveries':>10} {'idle Ir':>13}"
print(hdr)
print("-" * len(hdr))
notes = []

def pick(b, s, kind, rep):
    for r in runs:
        if (r.get("broker"), r.get("key"), r.get("kind"), r.get("rep")) == (b, s, kind, rep):
            return r
    return None

def span(v):
    if not v:
        return "-"
    return f"{statistics.median(v):,.0f} [{min(v):,.0f} - {max(v):,.0f}]"

for s in scenarios:
    for b in brokers:
        per_delivery, per_publish, delivered, idles = [], [], [], []
        for rep in range(1, int(repeat) + 1):
            run, idle = pick(b, s, "run", rep), pick(b, s, "idle", rep)
            if not run or not idle:
                continue
            d = run.get("delivery") or {}
            bad = [f"{k} {d[k]}" for k in ("lost", "duplicates", "invalid") if d.get(k)]
            for r in (run, idle):
                if r.get("rc") != 0:
                    bad.append(f"{r['kind']} exit {r.get('rc')}")
                if r.get("killed"):
                    bad.append(f"{r['kind']} broker killed")
                if r.get("instructions") is None:
                    bad.append(f"{r['kind']} no callgrind total")
                if r.get("errors"):
                    bad.append(f"{r['kind']}: {r['errors'][0]}")
            if bad:
                notes.append(f"  {s} {b} #{rep}: " + "; ".join(bad))
                continue
            cost = run["instructions"] - idle["instructions"]
            per_delivery.append(cost / d["received"])
            per_publish.append(cost / d["sent"])
            delivered.append(d["received"])
            idles.append(idle["instructions"])
        print(f"{s:<11} {b:<13} {span(per_delivery):>24} {span(per_publish):>24} "
              f"{(delivered[0] if delivered else '-'):>10} "
              f"{(f'{statistics.median(idles):,.0f}' if idles else '-'):>13}")
print("\nnot counted:" if notes else "\nevery run clean: all delivered, no duplicate, no error")
for n in notes:
    print(n)
PY
echo "raw results: $RESULTS" >&2
