#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine:
# - real MQTT clients (mosquitto_pub/sub, Python paho-mqtt) to drive the broker with;
# - the servers fogg-testcontainers starts as local processes when neither
#   FOGG_TEST_<SERVICE>_URL nor Docker provides them: redis-server, PostgreSQL
#   (+ contrib for pgcrypto), MariaDB, memcached, RabbitMQ, mosquitto, and a
#   MongoDB-wire server (mongod when present, else secantusd-rs from crates.io,
#   GPL, only ever run as a separate test server process, never linked).
# Idempotent: does nothing when everything is already there.
# The Debian packages are left installed but NOT running as system services:
# the tests start their own instances on free loopback ports.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

SECANTUS_VERSION="0.5.3-beta.196"

have() { command -v "$1" >/dev/null 2>&1; }
have_any() { for p in "$@"; do [ -x "$p" ] && return 0; done; return 1; }

apt_packages=()
have mosquitto_pub || apt_packages+=(mosquitto-clients)
have mosquitto || have_any /usr/sbin/mosquitto || apt_packages+=(mosquitto)
have redis-server || have_any /usr/bin/redis-server || apt_packages+=(redis-server)
# shellcheck disable=SC2144 # globs: any installed major version will do
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then apt_packages+=(postgresql); fi
if ! ls /usr/share/postgresql/*/extension/pgcrypto.control >/dev/null 2>&1; then apt_packages+=(postgresql-contrib); fi
have mariadbd || have_any /usr/sbin/mariadbd || apt_packages+=(mariadb-server)
have memcached || have_any /usr/bin/memcached || apt_packages+=(memcached)
have_any /usr/lib/rabbitmq/bin/rabbitmq-server /usr/sbin/rabbitmq-server || apt_packages+=(rabbitmq-server)

need_secantus=0
if ! have mongod && ! have secantusd-rs && ! have_any "${CARGO_HOME:-$HOME/.cargo}/bin/secantusd-rs"; then
    need_secantus=1
    have cmake || apt_packages+=(cmake)
fi

if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "install-test-deps: apt-get install ${apt_packages[*]}"
    # Keep the packages' postinst scripts from starting system services (they
    # would hold the default ports and run as daemons nobody stops): a
    # policy-rc.d that says 101 ("action forbidden") is honoured by invoke-rc.d
    # and deb-systemd-invoke alike. Only ours is removed afterwards.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    status=0
    {
        $SUDO apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
                "${apt_packages[@]}" >/dev/null
    } || status=$?
    if [ "$own_policy" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
    [ "$status" -eq 0 ] || exit "$status"

    # Under systemd, also keep the units from starting at the next boot (and
    # stop any that did start). Without systemd (a container) there is nothing
    # that would start them.
    if [ -d /run/systemd/system ] && have systemctl; then
        for unit in redis-server postgresql mariadb memcached rabbitmq-server mosquitto epmd.socket epmd; do
            if systemctl list-unit-files "$unit*" >/dev/null 2>&1; then
                $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
            fi
        done
    fi
fi

if ! python3 -c 'import paho.mqtt' >/dev/null 2>&1; then
    echo "install-test-deps: pip install paho-mqtt"
    python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi

if [ "$need_secantus" -eq 1 ]; then
    # Built from source once (WiredTiger through cmake; several minutes on 2
    # cores); it then persists in ~/.cargo/bin. Its own target dir so a
    # CARGO_TARGET_DIR exported for the workspace is not filled with it.
    echo "install-test-deps: cargo install secantus-mdb ${SECANTUS_VERSION} (MongoDB-wire test server, takes a while)"
    build_dir="$(mktemp -d)"
    trap 'rm -rf "$build_dir"' EXIT
    start=$(date +%s)
    CARGO_TARGET_DIR="$build_dir" cargo install --quiet secantus-mdb --version "$SECANTUS_VERSION" \
        --locked --ignore-rust-version
    rm -rf "$build_dir"
    echo "install-test-deps: secantus-mdb installed in $(($(date +%s) - start)) s"
fi

# --- Browser test (TLS/WebSocket/PROXY work, issue 6): headless Chromium,
# --- node and the MQTT.js packages. Kept in its own script.
"$(dirname "$0")/install-browser-deps.sh"
