#!/usr/bin/env bash
# Fogg against mosquitto, side by side, on loopback.
#
# Builds `fogg` and `fogg-bench` in release, then for every round and every
# scenario starts a fresh fogg, runs fogg-bench against it, stops it, and does
# the same with a fresh mosquitto (A B A B ...). Prints, per scenario, the
# median of each broker and the ratio fogg/mosquitto. See core/bench/README.md.
# With `relay` among the brokers (fogg-relay, a minimal forwarder: the
# machine's ceiling) the throughput and latency scenarios also run against
# it and the summary adds a BROKER/relay ratio column.
#
#   scripts/bench/compare.sh                  # 3 rounds, 5 s per throughput run
#   scripts/bench/compare.sh --quick          # 1 round, 3 s: a smoke test
#   scripts/bench/compare.sh --rounds 5 --duration 10s --scenarios pairs-q0,latency-q1
#   scripts/bench/compare.sh --brokers fogg-os,fogg-fsync,fogg-memory,mosquitto \
#       --baseline fogg-memory --scenarios persist-q1,persist-q1-single
#   scripts/bench/compare.sh --transport tls --scenarios connect-rate,pairs-q1
#   scripts/bench/compare.sh --brokers fogg@ws,fogg@tcp --scenarios pairs-q0
#   scripts/bench/compare.sh --brokers fogg,mosquitto,relay --scenarios pairs-q0,fan-out-q0
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROUNDS=3
DURATION=5s
SCENARIOS=""
OUT=""
BUILD=1
IDLE_CONNECTIONS=10000
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"
BROKERS="fogg mosquitto"
BASELINE=""
TRANSPORT=tcp
FOGG_CONF=""
USERNAME=""
PASSWORD=""
CONNECT_EXTRA=""
BENCH_ARGS=""
declare -A VARIANT_FILE=()
ALL_SCENARIOS="pairs-q0 pairs-q1 pairs-q2 fan-in-q0 fan-out-q0 latency-q1 idle connect-rate persist-q1 persist-q1-single"
# What the relay runs (it has no sessions, store, auth or TLS); "-" elsewhere.
RELAY_SCENARIOS="pairs-q0 pairs-q1 pairs-q2 fan-in-q0 fan-out-q0 latency-q1"

usage() {
    cat <<EOF
usage: $0 [--quick] [--rounds N] [--duration D] [--scenarios a,b,...]
          [--idle-connections N] [--out DIR] [--no-build]
          [--brokers a,b,...] [--baseline NAME] [--transport tcp|tls|ws]
          [--variant NAME=FILE]... [--fogg-conf FILE] [--username U --password P]
          [--fixed-ids] [--connect-warmup D] [--bench-args ARGS]

  --quick             1 round, 3 s per timed run (smoke test)
  --rounds N          rounds of A B (default 3)
  --duration D        length of each timed run, e.g. 5s (default 5s)
  --scenarios LIST    comma-separated subset of: ${ALL_SCENARIOS// /,}
  --idle-connections  connections held by the idle scenario (default 10000)
  --out DIR           keep logs and results.jsonl here (default: a new temp dir)
  --no-build          use the binaries already built
  --brokers LIST      brokers run in turn each round (default fogg,mosquitto), each
                      NAME[@tcp|@tls|@ws]; NAME is mosquitto, fogg, fogg-memory
                      ([storage] backend = "memory"), fogg-os / fogg-fsync (the
                      embedded store with durability "os" / "fsync"), a --variant, or
                      relay (fogg-relay, a minimal forwarder; TCP only, and only the
                      scenarios ${RELAY_SCENARIOS// /,})
  --baseline NAME     ratios are each broker / this one (default: the last broker
                      other than relay); with relay, a BROKER/relay column too
  --transport T       transport of brokers given without @T (default tcp); tls makes
                      a CA and a server certificate (EC P-256) in OUT/pki for both
  --variant NAME=FILE fogg with FILE added to its conf.d (e.g. [storage], [auth],
                      [[acl.rules]], [backends.*]); may be repeated
  --fogg-conf FILE    added to the conf.d of every fogg run (after the variant's)
  --username U, --password P
                      credentials of every CONNECT in connect-rate
  --fixed-ids         connect-rate: each worker reuses one client id (auth caches
                      are keyed on it)
  --connect-warmup D  connect-rate: cycles in the first D are not counted
  --bench-args ARGS   more fogg-bench options before the scenario, for every run
                      (e.g. "--connect-username u --connect-password p")
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
        --brokers) BROKERS="${2//,/ }"; shift ;;
        --baseline) BASELINE="$2"; shift ;;
        --transport) TRANSPORT="$2"; shift ;;
        --variant)
            case "$2" in
                *=*) VARIANT_FILE["${2%%=*}"]="$(realpath "${2#*=}")" ;;
                *) echo "--variant wants NAME=FILE, not $2" >&2; exit 64 ;;
            esac
            shift ;;
        --fogg-conf) FOGG_CONF="$(realpath "$2")"; shift ;;
        --username) USERNAME="$2"; shift ;;
        --password) PASSWORD="$2"; shift ;;
        --fixed-ids) CONNECT_EXTRA="$CONNECT_EXTRA --fixed-ids" ;;
        --connect-warmup) CONNECT_EXTRA="$CONNECT_EXTRA --warmup $2"; shift ;;
        --bench-args) BENCH_ARGS="$2"; shift ;;
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
# Every broker entry: a known name (or variant) and a known transport.
NEED_TLS=0
NEED_MOSQUITTO=0
LAST_BROKER=""
for b in $BROKERS; do
    name="${b%%@*}"
    t="$TRANSPORT"
    [[ "$b" == *@* ]] && t="${b#*@}"
    case "$t" in
        tcp|ws) ;;
        tls) NEED_TLS=1 ;;
        *) echo "unknown transport $t in $b (tcp, tls, ws)" >&2; exit 64 ;;
    esac
    case "$name" in
        mosquitto) NEED_MOSQUITTO=1 ;;
        fogg|fogg-memory|fogg-os|fogg-fsync) ;;
        relay)
            if [ "$t" != tcp ]; then
                echo "relay speaks plain TCP only, not $t ($b)" >&2
                exit 64
            fi ;;
        *)
            if [ -z "${VARIANT_FILE[$name]:-}" ]; then
                echo "unknown broker $name: not mosquitto, fogg, fogg-memory, fogg-os, fogg-fsync, relay or a --variant" >&2
                exit 64
            fi ;;
    esac
    if [ "$name" != relay ] || [ -z "$LAST_BROKER" ]; then LAST_BROKER="$b"; fi
done
for f in "${VARIANT_FILE[@]}" $FOGG_CONF; do
    [ -r "$f" ] || { echo "cannot read $f" >&2; exit 66; }
done
BASELINE="${BASELINE:-$LAST_BROKER}"
case " $BROKERS " in
    *" $BASELINE "*) ;;
    *) echo "--baseline $BASELINE is not one of --brokers" >&2; exit 64 ;;
esac

for tool in ss jq python3 timeout; do
    command -v "$tool" >/dev/null || { echo "compare.sh needs $tool" >&2; exit 69; }
done
if [ "$NEED_MOSQUITTO" = 1 ] && [ ! -x "$MOSQUITTO" ]; then
    echo "no mosquitto at $MOSQUITTO (Debian: apt-get install mosquitto)" >&2
    exit 69
fi

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$BUILD" = 1 ]; then
    echo "== building fogg, fogg-bench and fogg-relay (release)" >&2
    (cd "$ROOT" && cargo build --release -p fogg-bench --bins && cargo build --release -p fogg --bin fogg) >&2
fi
FOGG="$TARGET/release/fogg"
BENCH="$TARGET/release/fogg-bench"
RELAY="$TARGET/release/fogg-relay"
NEEDED=("$FOGG" "$BENCH")
case " $BROKERS " in *" relay "*|*" relay@tcp "*) NEEDED+=("$RELAY") ;; esac
for b in "${NEEDED[@]}"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 69; }; done

# Idle connections need file descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -z "$OUT" ]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/fogg-compare.XXXXXX")"; fi
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

# One throw-away CA and server certificate for localhost / 127.0.0.1, used by
# every TLS broker of the run (the same files for fogg and mosquitto).
PKI="$OUT/pki"
if [ "$NEED_TLS" = 1 ]; then
    command -v openssl >/dev/null || { echo "--transport tls needs openssl" >&2; exit 69; }
    mkdir -p "$PKI"
    (
        cd "$PKI"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -subj "/CN=fogg-bench CA" -days 30 -out ca.crt \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile server.ext -out server.crt 2>/dev/null
        # mosquitto drops root for its own user, which must read them.
        chmod 755 . && chmod 644 ./*
    )
fi
LOAD_BEFORE="$(uptime)"

BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ] && alive "$BROKER_PID"; then
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_broker NAME TRANSPORT PORT DIR: starts it in the background, sets
# BROKER_PID, waits until it listens.
start_broker() {
    local name="$1" transport="$2" port="$3" dir="$4" listener=""
    mkdir -p "$dir"
    if [ "$name" = mosquitto ]; then
        # Persistent-session scenarios run mosquitto with its persistence
        # on (a snapshot every autosave_interval, its default of 30 min).
        local persistence=false
        case "${SCENARIO:-}" in persist-*) persistence=true ;; esac
        case "$transport" in
            ws) listener="protocol websockets" ;;
            tls) listener="certfile $PKI/server.crt
keyfile $PKI/server.key" ;;
        esac
        cat > "$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
$listener
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
    elif [ "$name" = relay ]; then
        "$RELAY" --listen "127.0.0.1:$port" > "$dir/broker.log" 2>&1 &
        BROKER_PID=$!
    else
        mkdir -p "$dir/conf.d" "$dir/data"
        case "$transport" in
            tcp) listener='kind = "tcp"' ;;
            ws) listener='kind = "ws"
ws_path = "/mqtt"' ;;
            tls) listener="kind = \"tls\"
certfile = \"$PKI/server.crt\"
keyfile = \"$PKI/server.key\"" ;;
        esac
        cat > "$dir/conf.d/10-bench.toml" <<EOF
[broker]
sys_interval = "0s"
data_dir = "$dir/data"

[[listeners]]
name = "mqtt"
bind = "127.0.0.1:$port"
$listener
EOF
        local variant="$dir/conf.d/50-variant.toml"
        case "$name" in
            fogg) ;;
            fogg-memory) printf '[storage]\nbackend = "memory"\n' > "$variant" ;;
            fogg-os) printf '[storage]\nbackend = "embedded"\ndurability = "os"\n' > "$variant" ;;
            fogg-fsync) printf '[storage]\nbackend = "embedded"\ndurability = "fsync"\n' > "$variant" ;;
            *) cp "${VARIANT_FILE[$name]}" "$variant" ;;
        esac
        if [ -n "$FOGG_CONF" ]; then cp "$FOGG_CONF" "$dir/conf.d/60-extra.toml"; fi
        RUST_LOG=warn "$FOGG" --config-dir "$dir/conf.d" > "$dir/broker.log" 2>&1 &
        BROKER_PID=$!
    fi
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
        connect-rate)
            local creds=""
            if [ -n "$USERNAME" ]; then creds="$creds --username $USERNAME"; fi
            if [ -n "$PASSWORD" ]; then creds="$creds --password $PASSWORD"; fi
            echo "connect-rate --concurrency 50 --duration $DURATION$creds$CONNECT_EXTRA" ;;
        # Subscribers with clean session off: fogg writes every message to
        # its embedded store before the PUBACK.
        persist-q1) echo "pairs --pairs 50 --qos 1 --inflight 100 --persistent --duration $DURATION" ;;
        persist-q1-single) echo "pairs --pairs 1 --qos 1 --inflight 100 --persistent --duration $DURATION" ;;
    esac
}

echo "== $ROUNDS round(s), ${DURATION} runs, brokers: $BROKERS (baseline $BASELINE), scenarios: $SCENARIOS" >&2
echo "== load before: $LOAD_BEFORE" >&2
echo "== logs and raw results: $OUT" >&2
for round in $(seq 1 "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for broker in $BROKERS; do
            name="${broker%%@*}"
            transport="$TRANSPORT"
            [[ "$broker" == *@* ]] && transport="${broker#*@}"
            dir="$OUT/r$round/$scenario/${broker//@/-}"
            if [ "$name" = relay ]; then
                case " $RELAY_SCENARIOS " in
                    *" $scenario "*) ;;
                    *) echo "r$round [$broker] $scenario: not run (throughput and latency scenarios only)" >&2
                       continue ;;
                esac
            fi
            port="$(free_port)"
            SCENARIO="$scenario"
            if ! start_broker "$name" "$transport" "$port" "$dir"; then
                jq -nc --arg b "$broker" --arg s "$scenario" --argjson r "$round" \
                    '{broker:$b, key:$s, round:$r, rc:-1, ok:false, metrics:{}, errors:["broker did not start"]}' >> "$RESULTS"
                continue
            fi
            args="$(bench_args "$scenario")"
            if [ "$scenario" = idle ]; then args="$args --broker-pid $BROKER_PID"; fi
            case "$transport" in
                tls) args="--tls --cafile $PKI/ca.crt $args" ;;
                ws) args="--ws $args" ;;
            esac
            args="$BENCH_ARGS $args"
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

LOAD_AFTER="$(uptime)"
python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$BROKERS" "$BASELINE" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys

path, rounds, duration = sys.argv[1], sys.argv[2], sys.argv[3]
brokers, baseline = sys.argv[4].split(), sys.argv[5]
load_before, load_after = sys.argv[6].strip(), sys.argv[7].strip()
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
    "persist-q1": [("delivered_per_s", "higher")],
    "persist-q1-single": [("delivered_per_s", "higher")],
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

print(f"\n{' vs '.join(brokers)}: medians over {rounds} round(s), {duration} timed runs, fresh broker per run")
print(f"load before: {load_before}")
print(f"load after:  {load_after}")
def is_relay(b):
    return b.split("@")[0] == "relay"
relays = [b for b in brokers if is_relay(b)]
relay = relays[0] if relays and not is_relay(baseline) else None
# Each broker / the baseline; with the relay (the ceiling) in the run, each
# other broker / relay too, instead of relay / baseline.
cols = [(b, baseline) for b in brokers if b != baseline and not (relay and is_relay(b))]
if relay:
    cols += [(b, relay) for b in brokers if not is_relay(b)]
w = max([12] + [len(b) + 1 for b in brokers])
rw = {c: max(10, len(c[0]) + len(c[1]) + 2) for c in cols}
hdr = f"{'scenario':<17} {'metric':<18} " + " ".join(f"{b:>{w}}" for b in brokers)
hdr += "".join(f" {(a + '/' + d):>{rw[(a, d)]}}" for a, d in cols) + "  better"
print(hdr)
print("-" * len(hdr))
for key in order:
    for metric, better in shown[key]:
        vals = {b: med(key, b, metric)[0] for b in brokers}
        line = f"{key:<17} {metric:<18} " + " ".join(f"{fmt(vals[b]):>{w}}" for b in brokers)
        for a, d in cols:
            v, base = vals[a], vals[d]
            ratio = f"{v / base:.2f}x" if v is not None and base not in (None, 0) else "-"
            line += f" {ratio:>{rw[(a, d)]}}"
        print(line + f"  {better}")

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
