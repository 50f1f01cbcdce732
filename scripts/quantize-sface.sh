#!/usr/bin/env bash
# Make the int8 SFace (`make int8`): align 500 LFW faces spread over its
# people, calibrate ONNX Runtime's static quantiser on them, and check the
# result against the hash pinned in crates/vision/src/models.rs. Needs LFW
# (../shared/datasets/lfw or $FACEGATE_DATASETS/lfw); nothing is downloaded
# except the pinned onnxruntime wheel into the private venv.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODELS_DIR=${FACEGATE_MODELS_DIR:-$ROOT/models}
venv=$MODELS_DIR/.cache/venv
OUT=$MODELS_DIR/face_recognition_sface_2021dec_int8.onnx
WANT=$(grep -A2 'pub const SFACE_INT8: ModelFile' "$ROOT/crates/vision/src/models.rs" | sed -n 's/.*sha256: "\([0-9a-f]*\)".*/\1/p')

# The quantiser needs onnxruntime's Python package: the wheel fetch-models.sh
# pinned and checked, installed with the versions prepare_models.py uses.
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  "$MODELS_DIR"/.cache/onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl sympy==1.14.0 \
  onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2
crops=$(mktemp)
trap 'rm -f "$crops"' EXIT
"$ROOT/target/release/facegate" --models-dir "$MODELS_DIR" models crops --count 500 --out "$crops"
# The depthwise convolutions and the first one stay in float: quantised,
# they cost the most accuracy and saved no time. Equalising the channels'
# ranges first (alpha 0.5) cut the int8 error by a third (README, "int8 SFace").
keep=conv_1_conv2d$(printf ',conv_%d_dw_conv2d' $(seq 2 14))
"$venv/bin/python" "$ROOT/scripts/quantize_sface.py" "$crops" "$MODELS_DIR/face_recognition_sface_2021dec.onnx" "$OUT" \
  --method percentile --keep-float "$keep" --equalize 0.5
got=$(sha256sum "$OUT" | cut -d' ' -f1)
if [ "$got" != "$WANT" ]; then
  echo "quantize-sface: $OUT has sha256 $got, models.rs pins $WANT" >&2
  exit 1
fi
echo "quantize-sface: $OUT ready ($got)" >&2
