#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine: real MQTT
# clients (mosquitto_pub/sub, Python paho-mqtt) to drive the broker with.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_packages=()
command -v mosquitto_pub >/dev/null 2>&1 || apt_packages+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_packages+=(mosquitto)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "install-test-deps: apt-get install ${apt_packages[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

if ! python3 -c 'import paho.mqtt' >/dev/null 2>&1; then
    echo "install-test-deps: pip install paho-mqtt"
    python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi
