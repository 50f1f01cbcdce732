#!/usr/bin/env bash
# Installs what the browser test needs: Debian's Chromium and the pinned
# playwright-core from web/package-lock.json. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian's chromium"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "chromium is missing and this user cannot install it (no root, no sudo); the browser test will skip" >&2
        exit 0
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ ! -d web/node_modules/playwright-core ]; then
    echo "installing playwright-core (npm ci)"
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
