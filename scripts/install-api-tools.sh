#!/usr/bin/env bash
# Installs the API conformance tools the tests drive, from PyPI, into
# .venv-tools: schemathesis (property-based tests of the OpenAPI document
# against the running server) and openapi-python-client (a client generated
# from the document). Versions are pinned. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-tools
SCHEMATHESIS=4.32.5
CLIENT_GENERATOR=0.29.1

if [ -x "$VENV/bin/schemathesis" ] && [ -x "$VENV/bin/openapi-python-client" ] \
    && "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('schemathesis') == '$SCHEMATHESIS' and m.version('openapi-python-client') == '$CLIENT_GENERATOR'" 2>/dev/null; then
    exit 0
fi
echo "installing schemathesis $SCHEMATHESIS and openapi-python-client $CLIENT_GENERATOR into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS" "openapi-python-client==$CLIENT_GENERATOR"
