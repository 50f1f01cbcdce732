#!/usr/bin/env python3
"""Prepare the shipped ONNX models for fast, dynamic-shape inference.

The edits leave every output numerically the same (see DESIGN.md §3 and the
`prepared_matches_original` test):

SFace
  * drop the weights that the file also lists as graph inputs, so ONNX Runtime
    treats them as constants and folds BatchNorm into the convolutions;
  * rewrite each PRelu(x, s) as r + s * (x - r) with r = Relu(x): PRelu was most
    of the run time, and Relu/Sub/Mul/Add are fused well by ONNX Runtime;
  * make the batch dimension symbolic, so several faces run in one call.
YuNet
  * make the batch, height and width of the input symbolic, so the detector runs
    at the image's own size padded to a multiple of 32 instead of 640x640.

Usage: prepare_models.py ORIGINAL_DIR OUT_DIR
"""
import sys
from pathlib import Path

import onnx
from onnx import helper

YUNET = "face_detection_yunet_2023mar.onnx"
SFACE = "face_recognition_sface_2021dec.onnx"


def set_dims(value_info, names):
    """Replace the leading dims of a tensor's shape by symbolic names."""
    dims = value_info.type.tensor_type.shape.dim
    for dim, name in zip(dims, names):
        if name is not None:
            dim.ClearField("dim_value")
            dim.dim_param = name


def drop_initializer_inputs(graph):
    weights = {init.name for init in graph.initializer}
    real = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(real)


def rewrite_prelu(graph):
    nodes = []
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        x, slope = node.input
        out = node.output[0]
        r, d, m = (f"{out}__relu", f"{out}__diff", f"{out}__scaled")
        nodes += [
            helper.make_node("Relu", [x], [r], name=r),
            helper.make_node("Sub", [x, r], [d], name=d),
            helper.make_node("Mul", [slope, d], [m], name=m),
            helper.make_node("Add", [r, m], [out], name=f"{out}__add"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def prepare_sface(src, dst):
    model = onnx.load(src)
    graph = model.graph
    drop_initializer_inputs(graph)
    rewrite_prelu(graph)
    del graph.value_info[:]
    set_dims(graph.input[0], ["batch"])
    set_dims(graph.output[0], ["batch"])
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def prepare_yunet(src, dst):
    model = onnx.load(src)
    graph = model.graph
    del graph.value_info[:]
    set_dims(graph.input[0], ["batch", None, "height", "width"])
    for output in graph.output:
        set_dims(output, ["batch", "anchors"])
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    prepare_sface(str(src / SFACE), str(dst / SFACE))
    prepare_yunet(str(src / YUNET), str(dst / YUNET))


if __name__ == "__main__":
    main()
