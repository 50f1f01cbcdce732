"""The Python reference pipeline that `facegate bench http --python-reference`
measures facegate against: the same YuNet and SFace files on the same ONNX
Runtime, with OpenCV and NumPy around them, served by gunicorn. It answers
`POST /api/v1/face/match` as facegate does (`{match, matchLevel}`), with no
auth: it is a yardstick for speed, not a server anyone should deploy.

It is tuned as a careful Python team would tune it: one intra-op thread and no
spinning per session (the bench runs one gunicorn worker per core), OpenCV's
libjpeg-turbo decode with the reduced-scale flags for large photos, weights
folded as ONNX Runtime advises when it loads the files as shipped, vectorised
YuNet decoding, and OpenCV's NMS and warp.

Environment (set by the bench): FACEGATE_REFERENCE_MODELS, the models
directory; FACEGATE_REFERENCE_THRESHOLDS, the five level thresholds.
"""
import base64
import binascii
import json
import os

import cv2
import numpy as np
import onnx
import onnxruntime as ort

MODELS = os.environ.get("FACEGATE_REFERENCE_MODELS", "models")
THRESHOLDS = [float(t) for t in os.environ.get("FACEGATE_REFERENCE_THRESHOLDS", "").split(",") if t]
MAX_SIDE = 640
SCORE_THRESHOLD = 0.5
NMS_THRESHOLD = 0.3
STRIDES = (8, 16, 32)
LARGE_FILE = 256 * 1024
REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

cv2.setNumThreads(1)


def load(name):
    """The model, with its weights no longer listed as graph inputs: ONNX
    Runtime's own advice when it loads the file as shipped, so that it can
    fold them (a no-op on facegate's prepared copy, which already has)."""
    model = onnx.load(os.path.join(MODELS, name))
    weights = {w.name for w in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return model.SerializeToString()


def session(name):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(load(name), options, providers=["CPUExecutionProvider"])


YUNET = session("face_detection_yunet_2023mar.onnx")
SFACE = session("face_recognition_sface_2021dec.onnx")
YUNET_INPUT = YUNET.get_inputs()[0].name
# The file as shipped takes 640x640 only; facegate's prepared copy any size.
FIXED_INPUT = [d for d in YUNET.get_inputs()[0].shape[2:] if isinstance(d, int)]
SFACE_INPUT = SFACE.get_inputs()[0].name


class BadRequest(Exception):
    pass


def decode(field, text):
    """BGR pixels, decoded at the coarsest JPEG scale that keeps 640 px."""
    try:
        data = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except (binascii.Error, TypeError) as e:
        raise BadRequest(f"{field}: not base64") from e
    flags = cv2.IMREAD_COLOR
    # Only a large file can be a large photo; a small one skips the probe.
    if data.size > LARGE_FILE:
        header = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if header is None:
            raise BadRequest(f"{field}: not an image")
        long_side = max(header.shape) * 8
        for factor, flag in REDUCED:
            if long_side // factor >= 2 * MAX_SIDE:
                flags = flag
                break
    image = cv2.imdecode(data, flags)
    if image is None:
        raise BadRequest(f"{field}: not an image")
    return image


def detect(image):
    """Five landmarks of the most prominent face, in `image`'s pixels."""
    height, width = image.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    padded_h, padded_w = FIXED_INPUT or (-(-h // 32) * 32, -(-w // 32) * 32)
    blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
    blob[0, :, :h, :w] = image.transpose(2, 0, 1)
    outputs = dict(zip([o.name for o in YUNET.get_outputs()], YUNET.run(None, {YUNET_INPUT: blob})))
    boxes, scores, landmarks = [], [], []
    for stride in STRIDES:
        cols, rows = padded_w // stride, padded_h // stride
        score = np.sqrt(np.clip(outputs[f"cls_{stride}"].reshape(-1), 0, 1) * np.clip(outputs[f"obj_{stride}"].reshape(-1), 0, 1))
        keep = np.nonzero(score >= SCORE_THRESHOLD)[0]
        if keep.size == 0:
            continue
        grid = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        centre = (grid + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:]) * stride
        boxes.append(np.concatenate([centre - size / 2, size], axis=1))
        kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
        landmarks.append((kps + grid[:, None, :]) * stride)
        scores.append(score[keep])
    if not boxes:
        return None
    boxes, scores, landmarks = np.concatenate(boxes), np.concatenate(scores), np.concatenate(landmarks)
    kept = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), SCORE_THRESHOLD, NMS_THRESHOLD)).reshape(-1)
    boxes, landmarks = boxes[kept], landmarks[kept]
    centre = boxes[:, :2] + boxes[:, 2:] / 2 - np.array([w / 2, h / 2])
    prominence = boxes[:, 2] * boxes[:, 3] - 2 * (centre**2).sum(axis=1)
    return landmarks[int(np.argmax(prominence))] / scale


def align(image, landmarks):
    """The 112x112 crop: least-squares similarity onto the ArcFace template."""
    p = landmarks - landmarks.mean(axis=0)
    q = TEMPLATE - TEMPLATE.mean(axis=0)
    norm = (p**2).sum()
    a = (p * q).sum() / norm
    b = (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum() / norm
    rotation = np.array([[a, -b], [b, a]], dtype=np.float32)
    shift = TEMPLATE.mean(axis=0) - rotation @ landmarks.mean(axis=0)
    return cv2.warpAffine(image, np.hstack([rotation, shift[:, None]]), (112, 112), flags=cv2.INTER_LINEAR)


def embed(face):
    blob = face[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
    vector = SFACE.run(None, {SFACE_INPUT: blob})[0].reshape(-1)
    return vector / np.linalg.norm(vector)


def features(field, text):
    image = decode(field, text)
    landmarks = detect(image)
    if landmarks is None:
        raise BadRequest(f"{field}: no face found")
    return embed(align(image, landmarks.astype(np.float32)))


def match(body):
    similarity = float(features("sourceImage", body.get("sourceImage")) @ features("targetImage", body.get("targetImage")))
    level = sum(similarity >= t for t in THRESHOLDS)
    minimum = int(body.get("minimumMatchLevel", 3))
    return {"match": level >= minimum, "matchLevel": level}


def app(environ, start_response):
    if environ["PATH_INFO"] == "/readyz":
        return reply(start_response, "200 OK", {"status": "ready"})
    if environ["REQUEST_METHOD"] != "POST" or environ["PATH_INFO"] != "/api/v1/face/match":
        return reply(start_response, "404 Not Found", {"error": "not found"})
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length))
        return reply(start_response, "200 OK", match(body))
    except (BadRequest, ValueError) as e:
        return reply(start_response, "400 Bad Request", {"error": str(e)})


def reply(start_response, status, value):
    data = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
