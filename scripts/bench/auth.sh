#!/usr/bin/env bash
# Connects per second through the auth backends, and publish throughput with
# ACLs on and off: issue 5's figures. Starts real Redis, PostgreSQL and
# memcached servers on free loopback ports in a folder of its own (as
# fogg-testcontainers does without Docker), seeds one user, and runs
# compare.sh with one fogg variant per backend, side by side, alternating.
#
#   scripts/bench/auth.sh                      # 3 rounds, 5 s runs
#   scripts/bench/auth.sh --rounds 1 --duration 3s --out DIR
#   scripts/bench/auth.sh --only connect       # or: --only acl
#
# Connect figures (scenario connect-rate, 50 workers, each reusing one client
# id so the cache, keyed on the client id, can hit; the first --connect-warmup
# (default 5s: 50 bcrypt checks fill the cache) is not counted), all against
# the same user "bench":
#   noauth             no [auth] chain (anonymous allowed): the baseline
#   redis-bcrypt       Redis, VerneMQ layout, bcrypt cost 10 checked by fogg
#   redis-bcrypt-cache the same behind [auth] cache = memcached
#   pg-crypt           PostgreSQL, pgcrypto crypt() bcrypt cost 10, in SQL
#   pg-crypt-cache     the same behind memcached
#   pg-sha256          PostgreSQL, hex SHA-256 compared in SQL
#   pg-sha256-cache    the same behind memcached
# ACL figures (pairs-q0 and pairs-q1, 50 pairs; every client logs in as
# "aclbench", whose Redis hash is bcrypt cost 4 so that 100 logins are quick):
#   noacl              no rules, anonymous allowed (credentials ignored)
#   acl-static         48 [[acl.rules]]: 46 that do not match the bench's
#                      clients, then the allow they do match, then a final deny
#   acl-redis          Redis auth, the user's VerneMQ ACL (loaded at CONNECT):
#                      24 publish and 24 subscribe patterns that do not match,
#                      then fogg-bench/#
#
# Needs redis-server, memcached, postgres + initdb (scripts/install-test-deps.sh),
# psql, redis-cli, setpriv (PostgreSQL refuses to run as root), ss.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROUNDS=3
DURATION=5s
CONNECT_WARMUP=5s
OUT=""
ONLY="connect acl"
BUILD_FLAG=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --connect-warmup) CONNECT_WARMUP="$2"; shift ;;
        --no-build) BUILD_FLAG="--no-build" ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 64 ;;
    esac
    shift
done

for tool in redis-server redis-cli memcached psql setpriv ss; do
    command -v "$tool" >/dev/null || { echo "auth.sh needs $tool (scripts/install-test-deps.sh)" >&2; exit 69; }
done
PGBIN=""
for d in "$(dirname "$(command -v postgres 2>/dev/null || echo /nonexistent/x)")" /usr/lib/postgresql/*/bin; do
    if [ -x "$d/postgres" ] && [ -x "$d/initdb" ]; then PGBIN="$d"; break; fi
done
[ -n "$PGBIN" ] || { echo "auth.sh needs postgres and initdb" >&2; exit 69; }

if [ -z "$OUT" ]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/fogg-auth.XXXXXX")"; fi
mkdir -p "$OUT"
OUT="$(realpath "$OUT")"
SERVERS="$OUT/servers"
CONF="$OUT/conf"
mkdir -p "$SERVERS" "$CONF"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_listen NAME PORT PID: until something listens on PORT, or PID dies.
wait_listen() {
    local i
    for i in $(seq 1 300); do
        if [ -n "$(ss -Htln "( sport = :$2 )" 2>/dev/null)" ]; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then
            echo "$1 exited at start; see $SERVERS" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$1 did not listen on $2 within 30 s" >&2
    return 1
}

PASSWORD="bench-pw-$RANDOM"
USER=bench

echo "== servers in $SERVERS" >&2
REDIS_PORT="$(free_port)"
mkdir -p "$SERVERS/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$SERVERS/redis" > "$SERVERS/redis/log" 2>&1 &
PIDS+=($!)
wait_listen redis "$REDIS_PORT" "${PIDS[-1]}"

MEMCACHED_PORT="$(free_port)"
memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -u nobody > "$SERVERS/memcached.log" 2>&1 &
PIDS+=($!)
wait_listen memcached "$MEMCACHED_PORT" "${PIDS[-1]}"

PG_PORT="$(free_port)"
PGDIR="$SERVERS/pg"
mkdir -p "$PGDIR"
chmod 755 "$OUT" "$SERVERS"
chown postgres: "$PGDIR" 2>/dev/null || chown nobody: "$PGDIR"
PG_USER="$(stat -c %U "$PGDIR")"
# exec: started in the background, the job's pid is the server's own, which
# the cleanup stops.
as_pg() { exec setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --clear-groups -- "$@"; }
(as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    --no-sync) > "$PGDIR/initdb.log" 2>&1
as_pg "$PGBIN/postgres" -D "$PGDIR/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$PGDIR" -c fsync=off -c shared_buffers=32MB \
    -c max_connections=50 > "$PGDIR/log" 2>&1 &
PIDS+=($!)
wait_listen postgres "$PG_PORT" "${PIDS[-1]}"
psql_run() { psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }
for i in $(seq 1 50); do psql_run -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done

# One user in two VerneMQ tables: a pgcrypto bcrypt (cost 10) hash checked in
# SQL, and CockroachDB-style hex SHA-256. Redis gets a bcrypt cost 10 hash
# made by the same pgcrypto.
psql_run <<SQL
CREATE EXTENSION pgcrypto;
CREATE TABLE vmq_auth_acl (
  mountpoint character varying(10) NOT NULL,
  client_id character varying(128) NOT NULL,
  username character varying(128) NOT NULL,
  password character varying(128),
  publish_acl json,
  subscribe_acl json,
  CONSTRAINT vmq_auth_acl_primary_key PRIMARY KEY (mountpoint, client_id, username)
);
CREATE TABLE vmq_auth_sha (LIKE vmq_auth_acl INCLUDING ALL);
INSERT INTO vmq_auth_acl VALUES ('', '*', '$USER', crypt('$PASSWORD', gen_salt('bf', 10)),
  '[{"pattern": "#"}]', '[{"pattern": "#"}]');
INSERT INTO vmq_auth_sha VALUES ('', '*', '$USER', encode(digest('$PASSWORD', 'sha256'), 'hex'),
  '[{"pattern": "#"}]', '[{"pattern": "#"}]');
SQL
BCRYPT="$(psql_run -At -c "SELECT crypt('$PASSWORD', gen_salt('bf', 10))")"
case "$BCRYPT" in '$2a$10$'*) ;; *) echo "unexpected bcrypt hash from pgcrypto: $BCRYPT" >&2; exit 70 ;; esac
redis-cli -p "$REDIS_PORT" SET "[\"\",\"*\",\"$USER\"]" \
    "{\"passhash\":\"$BCRYPT\",\"publish_acl\":[{\"pattern\":\"#\"}],\"subscribe_acl\":[{\"pattern\":\"#\"}]}" >/dev/null
ACL_USER=aclbench
BCRYPT4="$(psql_run -At -c "SELECT crypt('$PASSWORD', gen_salt('bf', 4))")"
patterns="$(for i in $(seq 1 24); do printf '{"pattern":"devices/%s/+/cmd"},' "$i"; done)"
redis-cli -p "$REDIS_PORT" SET "[\"\",\"*\",\"$ACL_USER\"]" \
    "{\"passhash\":\"$BCRYPT4\",\"publish_acl\":[$patterns{\"pattern\":\"fogg-bench/#\"}],\"subscribe_acl\":[$patterns{\"pattern\":\"fogg-bench/#\"}]}" >/dev/null

# The fogg variants. The same memory store everywhere: connects are measured.
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
PG_URL="postgres://postgres:unused@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
CACHE="
[backends.cache]
kind = \"memcached\"
url = \"memcache://127.0.0.1:$MEMCACHED_PORT\"
pool_size = 4
"
backend_redis="[backends.db]
kind = \"redis\"
url = \"$REDIS_URL\"
pool_size = 2
"
backend_pg() {
    printf '[backends.db]\nkind = "postgres"\nurl = "%s"\npassword_hash_method = "%s"\ntable = "%s"\npool_size = 10\n' \
        "$PG_URL" "$1" "$2"
}
auth_plain='[auth]
allow_anonymous = false
chain = ["db"]
'
auth_cached='[auth]
allow_anonymous = false
chain = ["db"]
cache = "cache"
cache_ttl = "60s"
'
printf '[storage]\nbackend = "memory"\n' > "$CONF/noauth.toml"
printf '[storage]\nbackend = "memory"\n\n%s\n%s' "$backend_redis" "$auth_plain" > "$CONF/redis-bcrypt.toml"
printf '[storage]\nbackend = "memory"\n\n%s\n%s\n%s' "$backend_redis" "$CACHE" "$auth_cached" > "$CONF/redis-bcrypt-cache.toml"
printf '[storage]\nbackend = "memory"\n\n%s\n%s' "$(backend_pg crypt vmq_auth_acl)" "$auth_plain" > "$CONF/pg-crypt.toml"
printf '[storage]\nbackend = "memory"\n\n%s\n%s\n%s' "$(backend_pg crypt vmq_auth_acl)" "$CACHE" "$auth_cached" > "$CONF/pg-crypt-cache.toml"
printf '[storage]\nbackend = "memory"\n\n%s\n%s' "$(backend_pg sha256 vmq_auth_sha)" "$auth_plain" > "$CONF/pg-sha256.toml"
printf '[storage]\nbackend = "memory"\n\n%s\n%s\n%s' "$(backend_pg sha256 vmq_auth_sha)" "$CACHE" "$auth_cached" > "$CONF/pg-sha256-cache.toml"

# ACLs: rules for other users and topics first, so every check walks them.
{
    printf '[storage]\nbackend = "memory"\n'
    for i in $(seq 1 23); do
        printf '\n[[acl.rules]]\npermission = "allow"\naction = "all"\ntopic = "users/%s/#"\nusername = "user-%s"\n' "$i" "$i"
        printf '\n[[acl.rules]]\npermission = "deny"\naction = "publish"\ntopic = "devices/%s/+/cmd"\n' "$i"
    done
    printf '\n[[acl.rules]]\npermission = "allow"\naction = "all"\ntopic = "fogg-bench/#"\n'
    printf '\n[[acl.rules]]\npermission = "deny"\naction = "all"\ntopic = "#"\n'
} > "$CONF/acl-static.toml"
printf '[storage]\nbackend = "memory"\n' > "$CONF/noacl.toml"
printf '[storage]\nbackend = "memory"\n\n%s\n%s' "$backend_redis" "$auth_plain" > "$CONF/acl-redis.toml"

variants() { local v; for v in "$@"; do printf -- '--variant %s=%s ' "$v" "$CONF/$v.toml"; done; }

for what in $ONLY; do
    case "$what" in
        connect)
            brokers="noauth redis-bcrypt redis-bcrypt-cache pg-crypt pg-crypt-cache pg-sha256 pg-sha256-cache"
            # shellcheck disable=SC2046
            "$ROOT/scripts/bench/compare.sh" $BUILD_FLAG --rounds "$ROUNDS" --duration "$DURATION" \
                --out "$OUT/connect" --scenarios connect-rate --fixed-ids \
                --connect-warmup "$CONNECT_WARMUP" \
                --username "$USER" --password "$PASSWORD" \
                $(variants $brokers) --brokers "${brokers// /,}" --baseline noauth
            ;;
        acl)
            # shellcheck disable=SC2046
            "$ROOT/scripts/bench/compare.sh" $BUILD_FLAG --rounds "$ROUNDS" --duration "$DURATION" \
                --out "$OUT/acl" --scenarios pairs-q0,pairs-q1 \
                --bench-args "--connect-username $ACL_USER --connect-password $PASSWORD" \
                $(variants acl-static acl-redis noacl) --brokers acl-static,acl-redis,noacl \
                --baseline noacl
            ;;
        *) echo "unknown --only $what (connect, acl)" >&2; exit 64 ;;
    esac
    BUILD_FLAG="--no-build"
done
echo "== everything in $OUT" >&2
