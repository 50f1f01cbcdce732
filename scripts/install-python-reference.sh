#!/usr/bin/env bash
# Installs the Python reference pipeline that `facegate bench http
# --python-reference` serves beside facegate (scripts/python_reference.py),
# from PyPI, into .venv-reference: the same ONNX Runtime as facegate's
# (the wheel `make setup` takes libonnxruntime.so from), OpenCV for
# decoding, resizing and warping, NumPy, and gunicorn to serve it. Versions
# are pinned. Idempotent. Only the benchmark needs it; no test does.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-reference
PINS=(onnxruntime==1.32.0 onnx==1.23.2 protobuf==7.36.2 opencv-python-headless==5.1.0.95 numpy==2.4.6 gunicorn==27.0.1)

if [ -x "$VENV/bin/gunicorn" ] && "$VENV/bin/python" - "${PINS[@]}" <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    assert m.version(name) == version, pin
PY
    exit 0
fi
echo "installing ${PINS[*]} into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
