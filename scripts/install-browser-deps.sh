#!/usr/bin/env bash
# What the browser test needs (core/server/tests/websocket.rs: MQTT.js in
# headless Chromium over fogg's WebSocket listener): Debian's chromium (no
# downloaded browser builds), node/npm, and the npm packages pinned in
# core/server/tests/browser/package-lock.json (mqtt, playwright-core), into
# that folder's node_modules (not committed).
# Idempotent: does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_packages=()
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "install-browser-deps: apt-get install ${apt_packages[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${apt_packages[@]}" >/dev/null
fi

browser=core/server/tests/browser
# Re-install when the lock file is newer than what npm last installed.
if [ ! -f "$browser/node_modules/.package-lock.json" ] ||
    [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
    echo "install-browser-deps: npm ci in $browser"
    # playwright-core drives /usr/bin/chromium; it must not fetch browsers.
    (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
