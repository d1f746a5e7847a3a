"""The light prediction path: ONNX export and ONNX Runtime, without PyTorch."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import mimika
from mimika import MimikaError, Model, OnnxModel, create_model, export_onnx, shipped_models
from mimika.cli import main


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_onnx_matches_pytorch(name, astronaut_face):
    files = shipped_models()[name]
    assert set(files) == {".npz", ".onnx"}
    torch_model, onnx_model = Model.load(files[".npz"]), OnnxModel(files[".onnx"])
    assert onnx_model.config.to_dict() == torch_model.config.to_dict()
    c = torch_model.config.crop
    rng = np.random.default_rng(0)
    import cv2
    face = cv2.resize(astronaut_face, (c.width, c.height))
    crops = np.concatenate([face[None], face[None, :, ::-1],
                            rng.integers(0, 256, (30, c.height, c.width), dtype=np.uint8)])
    a, b = torch_model.predict_proba(crops), onnx_model.predict_proba(crops)
    assert np.abs(a - b).max() < 1e-5
    assert (a.argmax(1) == b.argmax(1)).all()


@pytest.mark.parametrize("arch", ["seed", "vgg48"])
def test_export_round_trip(tmp_path, arch):
    model = create_model(arch, seed=2)
    model.save(tmp_path / "m.npz", dtype="float16")
    model = Model.load(tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 0
    exported = OnnxModel(tmp_path / "m.onnx")
    assert exported.labels == model.labels
    x = np.random.default_rng(1).integers(0, 256, (300, model.config.crop.height, model.config.crop.width),
                                          dtype=np.uint8)  # more than one batch
    assert np.abs(exported.predict_proba(x) - model.predict_proba(x)).max() < 1e-5
    assert (tmp_path / "m.onnx").stat().st_size < 1.1 * (tmp_path / "m.npz").stat().st_size + 200_000


def test_bad_onnx_files(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"garbage")
    with pytest.raises(MimikaError, match="junk.onnx: not a readable ONNX model"):
        OnnxModel(junk)
    bare = tmp_path / "bare.onnx"
    export_onnx(create_model("vgg48"), bare)
    proto = onnx.load(str(bare))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    with pytest.raises(MimikaError, match="without mimika's configuration"):
        OnnxModel(bare)
    with pytest.raises(MimikaError, match="no trainable weights"):
        Model.load(junk)


def test_prediction_never_imports_torch(astronaut_path):
    code = ("import sys, json, mimika; faces = mimika.recognize(sys.argv[1]); "
            "print(json.dumps([len(faces), 'torch' in sys.modules, 'matplotlib' in sys.modules]))")
    r = subprocess.run([sys.executable, "-c", code, str(astronaut_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [1, False, False]
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mimika.cli", "predict", str(astronaut_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "torch" not in r.stderr.split()


def test_recognizer_accepts_npz_onnx_and_loaded_models(astronaut_path):
    files = shipped_models()[mimika.config.DEFAULT_MODEL]
    results = [mimika.Recognizer(m).get(astronaut_path)[0]
               for m in (None, files[".onnx"], files[".npz"], Model.load(files[".npz"]))]
    assert len({f.box for f in results}) == 1
    assert max(abs(f.scores[results[0].label] - results[0].score) for f in results) < 1e-5
