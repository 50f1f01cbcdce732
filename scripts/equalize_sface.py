"""Equalise SFace's activation ranges channel by channel before int8 quantisation.

ONNX Runtime's quantiser gives each activation tensor one uint8 scale (its
QLinearConv takes no other), so a channel whose values span a hundredth of
the tensor's range keeps two or three of the 256 steps. On SFace that
rounding, not the weights', is most of the int8 error (README, "int8 SFace").

SFace is a plain chain of convolutions, each followed by PReLU, and
PReLU(x / s) = PReLU(x) / s for any s > 0. So a channel can be scaled where a
convolution makes it and the scale undone where the next one reads it; the
float model computes the same function (cosine to the original above
1 - 1e-7 on LFW):

- a pointwise convolution's output channel c is divided by t_c (its weight
  row and bias) and the next depthwise convolution, which stays in float,
  multiplies its channel c by t_c. Per-channel weight quantisation scales
  each row to its own largest value, so this costs the weights nothing;
- a depthwise convolution's output channel c is divided by s_c and the
  pointwise convolution that reads it multiplies its input column c by s_c.
  That moves range from the activation into the weights, balanced by alpha
  as SmoothQuant does, with each weight measured against its row's largest.

Hand-written because ONNX Runtime's SmoothQuant needs Intel Neural
Compressor and handles MatMul only.
"""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

# SFace's blocks conv_2 .. conv_14: a depthwise then a pointwise convolution.
BLOCKS = range(2, 15)
# Each scale keeps 8 significant bits, so last-bit differences between CPUs
# in the statistics cannot change the file, and its pinned hash holds.
SIGNIFICANT = 256
# A dead channel's range is ~0; its scale stops here rather than explode.
FLOOR = 1e-3


def rounded(x):
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(mantissa * SIGNIFICANT) / SIGNIFICANT, exponent)


def channel_ranges(model, faces, tensors, percentile):
    """Each tensor's per-channel `percentile` of |x| over `faces` (NCHW float)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    seen = {name: [] for name in tensors}
    for start in range(0, len(faces), 20):
        for name, out in zip(tensors, session.run(tensors, {"data": faces[start : start + 20]})):
            seen[name].append(np.abs(out).transpose(1, 0, 2, 3).reshape(out.shape[1], -1))
    return {name: np.percentile(np.concatenate(v, 1), percentile, axis=1) for name, v in seen.items()}


class Weights:
    """The model's initializers, read and written as arrays."""

    def __init__(self, model):
        self.tensors = {t.name: t for t in model.graph.initializer}

    def __getitem__(self, name):
        return numpy_helper.to_array(self.tensors[name]).copy()

    def __setitem__(self, name, value):
        self.tensors[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def equalize(model, faces, alpha=0.5, percentile=99.99):
    """Rescales `model` (BatchNorm folded, as quant_pre_process leaves it) in place."""
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    pointwise = {k: convs[f"conv_{k}_conv2d"] for k in BLOCKS}
    depthwise = {k: convs[f"conv_{k}_dw_conv2d"] for k in BLOCKS}
    tensors = [t for k in BLOCKS for t in (pointwise[k].input[0], pointwise[k].output[0])]
    ranges = channel_ranges(model, faces, tensors, percentile)
    weights = Weights(model)
    for k in BLOCKS:
        pw, dw = pointwise[k], depthwise[k]
        w, b = weights[pw.input[1]], weights[pw.input[2]]
        # conv_14's output goes through a BatchNorm, which does not commute
        # with a scale; it carries under 1% of the error, so it is left.
        if k + 1 in BLOCKS:
            r = ranges[pw.output[0]]
            t = rounded(np.maximum(r / r.max(), FLOOR))
            w /= t[:, None, None, None]
            b /= t
            nxt = depthwise[k + 1].input[1]
            weights[nxt] = weights[nxt] * t[:, None, None, None]
        column = np.abs(w[:, :, 0, 0])
        relative = (column / column.max(1, keepdims=True)).max(0)
        s = np.maximum(ranges[pw.input[0]], 1e-5) ** alpha / np.maximum(relative, 1e-5) ** (1 - alpha)
        s = rounded(np.maximum(s / s.max(), FLOOR))
        weights[dw.input[1]] = weights[dw.input[1]] / s[:, None, None, None]
        weights[dw.input[2]] = weights[dw.input[2]] / s
        w *= s[None, :, None, None]
        weights[pw.input[1]] = w
        weights[pw.input[2]] = b
    return model
