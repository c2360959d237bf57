#!/usr/bin/env bash
# A million 64-byte QoS 1 messages queued for one offline persistent session
# in the embedded store: broker RSS before and after queueing, the time and
# RSS of a restart with that queue, and the time to drain it. Release build.
#
#   scripts/bench/queue-1m.sh [COUNT]        # default 1000000
#   NO_BUILD=1 DURABILITY=fsync scripts/bench/queue-1m.sh
#   UPGRADE_FROM=/tmp/fogg-old scripts/bench/queue-1m.sh
#       the queue is built by that (older) fogg and the restart runs this
#       one: the restart time is then the store's in-place format upgrade
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
COUNT="${1:-1000000}"
cd "$ROOT"
if [ -z "${NO_BUILD:-}" ]; then cargo build --release --bin fogg -q; fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
FOGG="$TARGET/release/fogg"
FIRST="${UPGRADE_FROM:-$FOGG}"
DIR="$(mktemp -d)"
# A free port above the ephemeral range, as compare.sh picks them.
PORT=""
for _ in $(seq 1 100); do
    p=$((61000 + RANDOM % 4500))
    if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "no free port found" >&2; exit 1; }
mkdir -p "$DIR/conf.d" "$DIR/data"
cat > "$DIR/conf.d/q.toml" <<CONF
[broker]
sys_interval = "0s"
data_dir = "$DIR/data"
max_offline_messages = 0
[storage]
durability = "${DURABILITY:-os}"
[[listeners]]
name = "mqtt"
bind = "127.0.0.1:$PORT"
CONF

PID=""
# The broker never outlives the script, whatever fails.
trap 'if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; fi; rm -rf "$DIR"' EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
start() {
    RUST_LOG=warn "${1:-$FOGG}" --config-dir "$DIR/conf.d" >> "$DIR/fogg.log" 2>&1 &
    PID=$!
    until ss -Htln "( sport = :$PORT )" | grep -q .; do sleep 0.02; done
}

echo "load before: $(uptime)"
echo "durability: ${DURABILITY:-os}, $COUNT messages, $FOGG"
if [ -n "${UPGRADE_FROM:-}" ]; then echo "queued by: $FIRST"; fi
start "$FIRST"
mosquitto_sub -p "$PORT" -i queued -c -q 1 -t 'load/#' -E
echo "rss idle with the session:  $(rss "$PID") KiB"
t0=$(date +%s.%N)
# 64-byte payloads: the line number, padded; every one acknowledged (not
# mosquitto_pub -l, which drops most of a long input at its end).
python3 "$ROOT/scripts/bench/publish.py" "$PORT" load/x "$COUNT"
t1=$(date +%s.%N)
echo "queued $COUNT in $(echo "$t1 - $t0" | bc) s"
echo "rss with $COUNT queued:      $(rss "$PID") KiB"
echo "data dir:                    $(du -sh "$DIR/data" | cut -f1)"
kill -TERM "$PID"; wait "$PID" || true

t0=$(date +%s.%N)
start
t1=$(date +%s.%N)
echo "restart to listening:        $(echo "$t1 - $t0" | bc) s"
echo "rss after restart:           $(rss "$PID") KiB"
t0=$(date +%s.%N)
# Payloads start with their line number: count them, and those that come
# after a higher one.
read -r got disordered < <({ mosquitto_sub -p "$PORT" -i queued -c -q 1 -t 'load/#' -C "$COUNT" -W "${DRAIN_TIMEOUT:-600}" || true; } |
    awk '{ n = $1 + 0; if (n < last) bad++; last = n } END { print NR, bad + 0 }')
t1=$(date +%s.%N)
echo "drained $got in $(echo "$t1 - $t0" | bc) s, $disordered out of order"
echo "rss after draining:          $(rss "$PID") KiB"
kill -TERM "$PID"; wait "$PID" || true
PID=""
echo "load after: $(uptime)"
