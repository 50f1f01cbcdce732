#!/usr/bin/env python3
"""Quantise the prepared SFace to int8 with ONNX Runtime's static quantiser.

Weights are int8 per output channel; activations are uint8 with ranges
calibrated on aligned LFW faces (`facegate models crops`), which is the pair
(u8 activations, s8 weights) that ONNX Runtime's VNNI kernels take. Only the
convolutions and the final Gemm can be quantised: they are nearly all of the
arithmetic, and keeping the PRelu rewrite (Relu/Sub/Mul/Add) in float avoids
a quantise/dequantise pair around each of its four nodes.

With `--equalize ALPHA`, each channel's activation range is first equalised
(`equalize_sface.py`), an exact rewrite of the float model that leaves the
quantiser less rounding to do.

Usage: quantize_sface.py CROPS PREPARED_SFACE OUT [--method M] [--percentile P]
       [--keep-float NODES] [--equalize ALPHA] [--cache RANGES]
(`scripts/quantize-sface.sh`, run by `make int8`, passes the measured choices.)
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from equalize_sface import equalize

SIDE = 112
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


def load_crops(path):
    """The crops file as NCHW float RGB at 0..255, as the engine feeds SFace."""
    raw = np.fromfile(path, dtype=np.uint8)
    return raw.reshape(-1, SIDE, SIDE, 3).transpose(0, 3, 1, 2).astype(np.float32)


class Crops(CalibrationDataReader):
    """Feeds the crops to the calibrator one face at a time."""

    def __init__(self, faces):
        # One face per run: the histogram calibrators need every batch the same shape.
        self.batches = iter(np.split(faces, len(faces)))

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"data": batch}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("crops")
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--method", choices=METHODS, default="minmax")
    parser.add_argument("--ops", default="Conv,Gemm")
    parser.add_argument("--keep-float", default="", help="comma-separated node names left in float")
    parser.add_argument("--percentile", type=float, default=99.999, help="with --method percentile")
    parser.add_argument("--equalize", type=float, metavar="ALPHA", help="equalise channel ranges first")
    parser.add_argument("--equalize-faces", type=int, default=200, help="faces the equalisation measures")
    parser.add_argument("--cache", help="calibration ranges: read if the file exists, else written")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and BatchNorm folding first, as the quantiser asks.
        # Per-channel DequantizeLinear (its `axis`) needs opset 13; SFace is 11.
        upgraded = str(Path(tmp) / "opset13.onnx")
        onnx.save(version_converter.convert_version(onnx.load(args.model), 13), upgraded)
        pre = str(Path(tmp) / "pre.onnx")
        quant_pre_process(upgraded, pre)
        faces = load_crops(args.crops)
        if args.equalize is not None:
            onnx.save(equalize(onnx.load(pre), faces[: args.equalize_faces], args.equalize), pre)
        quantize_static(
            pre,
            args.out,
            Crops(faces),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=args.ops.split(","),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=METHODS[args.method],
            nodes_to_exclude=[n for n in args.keep_float.split(",") if n],
            # Histogram 50 faces' activations at a time: all 500 at once
            # take over 20 GB.
            extra_options={"CalibMaxIntermediateOutputs": 50, "CalibPercentile": args.percentile},
            calibration_cache_path=args.cache,
        )


if __name__ == "__main__":
    main()
