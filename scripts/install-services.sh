#!/usr/bin/env bash
# Installs the servers the tests start by themselves: Debian's PostgreSQL
# (the storage contract and multi-node tests run it from a temporary
# directory; the packaged cluster is never started). Idempotent.
set -euo pipefail

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    echo "installing Debian's postgresql"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "postgresql is missing and this user cannot install it (no root, no sudo); the PostgreSQL tests will skip" >&2
        exit 0
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
