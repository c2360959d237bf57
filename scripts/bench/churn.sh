#!/usr/bin/env bash
# Steady churn against the embedded store, to check that disk use stays
# bounded: every cycle 20 persistent sessions queue 100 QoS 1 messages of
# 1 KiB each (2 MB written per cycle); half of them then drain their queues,
# the other half are thrown away (reconnect with a clean session); 50
# retained messages are set and half of them cleared again. The data dir is
# sampled after every cycle. Release build; needs mosquitto-clients.
#
#   scripts/bench/churn.sh [SECONDS]         # default 600
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DURATION="${1:-600}"
cd "$ROOT"
cargo build --release --bin fogg -q
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
FOGG="$TARGET/release/fogg"
DIR="$(mktemp -d)"
PORT=18831
mkdir -p "$DIR/conf.d" "$DIR/data"
cat > "$DIR/conf.d/churn.toml" <<CONF
[broker]
sys_interval = "0s"
data_dir = "$DIR/data"
max_offline_messages = 0
[[listeners]]
name = "mqtt"
bind = "127.0.0.1:$PORT"
CONF

RUST_LOG=warn "$FOGG" --config-dir "$DIR/conf.d" >> "$DIR/fogg.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
until ss -Htln "( sport = :$PORT )" | grep -q .; do sleep 0.02; done

payload="$(head -c 1024 /dev/zero | tr '\0' 'x')"
lines="$DIR/lines"
for _ in $(seq 100); do echo "$payload"; done > "$lines"

start=$(date +%s)
cycle=0
written=0
printf '%8s %8s %14s %10s\n' "seconds" "cycle" "written (MB)" "data dir"
while (( $(date +%s) - start < DURATION )); do
    cycle=$((cycle + 1))
    for i in $(seq 20); do
        mosquitto_sub -p "$PORT" -i "s$cycle-$i" -c -q 1 -t "churn/$cycle/$i" -E
    done
    for i in $(seq 20); do
        mosquitto_pub -p "$PORT" -i "p$cycle" -q 1 -t "churn/$cycle/$i" -l < "$lines"
    done
    written=$((written + 20 * 100 * 1024))
    for i in $(seq 10); do
        got=$(mosquitto_sub -p "$PORT" -i "s$cycle-$i" -c -q 1 -t "churn/$cycle/$i" -C 100 -W 60 | wc -l)
        [[ "$got" == 100 ]] || { echo "session s$cycle-$i drained $got of 100" >&2; exit 1; }
        # Leave for good: a clean session deletes the persistent one.
        mosquitto_sub -p "$PORT" -i "s$cycle-$i" -t x -E
    done
    for i in $(seq 11 20); do
        mosquitto_sub -p "$PORT" -i "s$cycle-$i" -t x -E
    done
    for i in $(seq 50); do
        mosquitto_pub -p "$PORT" -i "r$cycle" -q 1 -r -t "retained/$((cycle % 7))/$i" -m "$payload"
    done
    for i in $(seq 25); do
        mosquitto_pub -p "$PORT" -i "r$cycle" -q 1 -r -t "retained/$((cycle % 7))/$i" -n
    done
    printf '%8d %8d %14d %10s\n' "$(( $(date +%s) - start ))" "$cycle" "$((written / 1000000))" \
        "$(du -sh "$DIR/data" | cut -f1)"
done
kill -0 "$PID" || { echo "fogg died; log:" >&2; cat "$DIR/fogg.log" >&2; exit 1; }
echo "rss at the end: $(awk '/VmRSS/ {print $2}' "/proc/$PID/status") KiB"
