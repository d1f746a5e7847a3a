"""Experiment E24 (issue #11): the face's shape as a second view beside the pixels.

    python3 -m venv /tmp/lmenv && /tmp/lmenv/bin/pip install -c constraints.txt -e . scikit-learn ai-edge-litert
    pip download --no-deps mediapipe==0.10.14 -d /tmp/mp && unzip -j /tmp/mp/*.whl \
        mediapipe/modules/face_landmark/face_landmark.tflite -d /tmp/mesh
    /tmp/lmenv/bin/python experiments/shape_view.py [--mesh /tmp/mesh/face_landmark.tflite]

MediaPipe's face mesh (468 landmarks, Apache-2.0) reads the very 48x48 aligned crop `ferplus` reads,
upscaled and framed for the mesh's 192x192 input; the landmarks, centred and scaled, feed a
multinomial logistic regression trained on FER+ Training (majority labels, its regularisation
chosen on PublicTest). The fusion: `ferplus`'s calibrated logits (flip, as shipped) + lambda x the
shape classifier's log-probabilities. Printed on PublicTest (what decides, by the rule in
experiments/experiments.md): the shape classifier alone and each lambda against `ferplus`, with the
faces only one gets right and McNemar's p. No lambda passed the rule, so nothing was measured
after it (PrivateTest, CK+), and the script has no such step. The mesh runs only here,
for the experiment (ai-edge-litert); mimika's runtime stays ONNX Runtime + OpenCV. Landmarks are
cached under /tmp (they come from dataset images and never go into the repository).
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from mimika.common.fileio import atomic_path
from mimika.common.metrics import mcnemar_cells, report
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset
from mimika.training.calibration import prediction_logits

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MESH_SIZE = 192
FRAME = 1 / 6  # the crop fills the middle 2/3 of the mesh's input: the 1.5x face box MediaPipe gives its mesh
LAMBDAS = [0.1, 0.2, 0.3, 0.5, 1.0]


def landmarks(crops: np.ndarray, mesh_path: str) -> np.ndarray:
    """N x 468 x 3 mesh landmarks (input pixels) for uint8 48x48 crops."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=mesh_path, num_threads=2)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    inner = int(MESH_SIZE * (1 - 2 * FRAME))
    pad = (MESH_SIZE - inner) // 2
    result = np.empty((len(crops), 468, 3), np.float32)
    for i, crop in enumerate(crops):
        face = cv2.resize(crop, (inner, inner), interpolation=cv2.INTER_CUBIC)
        face = cv2.copyMakeBorder(face, pad, MESH_SIZE - inner - pad, pad, MESH_SIZE - inner - pad, cv2.BORDER_REPLICATE)
        x = np.repeat(face[None, :, :, None], 3, axis=3).astype(np.float32) / 255.0
        it.set_tensor(inp, x)
        it.invoke()
        result[i] = it.get_tensor(out).reshape(468, 3)
    return result


def shape_features(points: np.ndarray) -> np.ndarray:
    """Landmarks centred on their mean and scaled to unit spread: position and size carry no expression."""
    centred = points - points.mean(axis=1, keepdims=True)
    scale = np.sqrt((centred[:, :, :2] ** 2).sum(axis=2).mean(axis=1))
    return (centred / scale[:, None, None]).reshape(len(points), -1)


def cached_landmarks(name: str, crops: np.ndarray, mesh_path: str) -> np.ndarray:
    """The landmarks of `crops`, computed once: a run that dies mid-write leaves no half file."""
    path = Path("/tmp/e24") / f"{name}.npy"
    if path.exists():
        return np.load(path)
    points = landmarks(crops, mesh_path)
    with atomic_path(path) as tmp:
        np.save(tmp, points)
    return points


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh", default="/tmp/mesh/face_landmark.tflite")
    ap.add_argument("--model", default="ferplus")
    a = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    model = load_predictor(a.model)
    labels = model.labels
    data = load_dataset(SHARED / "fer2013" / "fer2013new.csv", model.config.crop).relabel(labels)
    parts = {s: data.split(s) for s in ("Training", "PublicTest")}
    crops_of = Path(a.model).stem  # the cache follows the model's crops
    feats = {s: shape_features(cached_landmarks(f"{crops_of}-{s}", parts[s].faces, a.mesh)) for s in parts}
    scaler = StandardScaler().fit(feats["Training"])
    feats = {s: scaler.transform(f) for s, f in feats.items()}

    val = parts["PublicTest"]
    best = None
    for c in (0.001, 0.01, 0.1, 1.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(feats["Training"], parts["Training"].y)
        acc = (clf.predict(feats["PublicTest"]) == val.y).mean()
        print(f"shape classifier, C {c:g}: PublicTest accuracy {acc:.4f}", flush=True)
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    _, c, clf = best
    r = report(val.y, clf.predict(feats["PublicTest"]), labels)
    print(f"shape classifier kept: C {c:g}, PublicTest accuracy {r['accuracy']:.4f}, balanced {r['balanced_accuracy']:.4f}")

    def log_shape(f: np.ndarray) -> np.ndarray:
        logp = np.full((len(f), len(labels)), -30.0)
        logp[:, clf.classes_] = clf.predict_log_proba(f)
        return logp

    def table(title: str, y: np.ndarray, faces: np.ndarray, f: np.ndarray, lams: list[float]) -> None:
        base = prediction_logits(model, faces) / model.config.temperature
        shape = log_shape(f)
        plain = base.argmax(1)
        rp = report(y, plain, labels)
        print(f"\n{title}, {len(y)} faces: `{a.model}` alone {rp['accuracy']:.4f} (balanced {rp['balanced_accuracy']:.4f})")
        print("| lambda | accuracy | balanced accuracy | faces only the fusion / only the model gets right | McNemar p |")
        print("|---|---|---|---|---|")
        for lam in lams:
            pred = (base + lam * shape).argmax(1)
            rf = report(y, pred, labels)
            print(f"| {lam:g} | {rf['accuracy']:.4f} | {rf['balanced_accuracy']:.4f} | "
                  f"{mcnemar_cells(pred == y, plain == y)} |", flush=True)

    table("PublicTest (decides)", val.y, val.faces, feats["PublicTest"], LAMBDAS)


if __name__ == "__main__":
    main()
