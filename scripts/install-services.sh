#!/usr/bin/env bash
# Installs the servers the tests start by themselves, from Debian's packages:
# PostgreSQL (the storage contract and cluster tests run it from a temporary
# directory; the packaged cluster is never started) and nginx (the cluster
# test puts three nodes behind it with deploy/nginx/facegate.conf; the
# packaged service is not used). Idempotent.
set -euo pipefail

missing=()
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    missing+=(nginx)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian's ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "${missing[*]} missing and this user cannot install them (no root, no sudo); their tests will skip" >&2
        exit 0
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
