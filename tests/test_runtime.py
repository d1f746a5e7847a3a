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


def _int8(model) -> bool:
    return model.config.precision == "int8"


def _probe_crops(face, c, n_random: int = 30):
    """The astronaut's face, its mirror image and random crops, at the model's input size."""
    import cv2
    face = cv2.resize(face, (c.width, c.height))
    rng = np.random.default_rng(0)
    return np.concatenate([face[None], face[None, :, ::-1],
                           rng.integers(0, 256, (n_random, c.height, c.width), dtype=np.uint8)])


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_export_of_each_shipped_model_matches_pytorch(name, astronaut_face, tmp_path):
    """The export path is exact: a float export computes what PyTorch computes (1e-5); so does each
    shipped float file (NAME.onnx, or NAME.float.onnx beside an INT8 NAME.onnx)."""
    files = shipped_models()[name]
    base = name.split(".")[0]  # "ferplus.float": the float version of ferplus's weights
    assert set(files) == ({".npz", ".onnx"} if base == name else {".onnx"})
    torch_model = Model.load(shipped_models()[base][".npz"])
    crops = _probe_crops(astronaut_face, torch_model.config.crop)
    a = torch_model.predict_proba(crops)
    shipped = OnnxModel(files[".onnx"])
    candidates = [OnnxModel(export_onnx(torch_model, tmp_path / "fresh.onnx"))]
    if not _int8(shipped):
        candidates.append(shipped)
    for onnx_model in candidates:
        assert onnx_model.config.to_dict() == torch_model.config.to_dict()
        b = onnx_model.predict_proba(crops)
        assert np.abs(a - b).max() < 1e-5
        assert (a.argmax(1) == b.argmax(1)).all()


def test_each_int8_model_ships_with_its_float_version():
    for name, files in shipped_models().items():
        if _int8(OnnxModel(files[".onnx"])):
            assert f"{name}.float" in shipped_models()


@pytest.mark.parametrize("name", sorted(n for n, f in shipped_models().items() if _int8(OnnxModel(f[".onnx"]))))
def test_shipped_int8_model_stays_close_to_pytorch(name, astronaut_face):
    """INT8 files trade exactness for speed: same config apart from how the file was made, and on
    a real face the same answer with probabilities within 0.01 (the FER test sets: tests/test_real_data.py)."""
    import cv2
    from conftest import variants
    files = shipped_models()[name]
    torch_model, onnx_model = Model.load(files[".npz"]), OnnxModel(files[".onnx"])
    info = onnx_model.config.to_dict()
    assert info["info"].pop("onnx")["calibration_faces"] > 0
    assert info == torch_model.config.to_dict()
    c = torch_model.config.crop
    crops = np.stack([cv2.resize(v, (c.width, c.height), interpolation=cv2.INTER_AREA)
                      for v in variants(astronaut_face, 16, 0)])
    a, b = torch_model.predict_proba(crops), onnx_model.predict_proba(crops)
    assert np.abs(a - b).max() < 0.01
    assert (a.argmax(1) == b.argmax(1)).all()
    assert np.allclose(b.sum(1), 1) and (b >= 0).all()


def test_int8_export_from_the_command_line(tmp_path, astronaut_face, capsys):
    import cv2
    from conftest import two_class_faces
    model = create_model("vgg48", seed=2)
    model.save(tmp_path / "m.npz", dtype="float16")
    faces, codes = two_class_faces(astronaut_face, 12)
    for i, (f, code) in enumerate(zip(faces, codes)):
        (tmp_path / "data" / str(code)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / str(code) / f"{i}.png"), f)
    out8 = tmp_path / "m8.onnx"
    assert main(["export", str(tmp_path / "m.npz"), str(out8), "--int8", "--calibration", str(tmp_path / "data")]) == 0
    assert "INT8, calibrated on data, 24 faces" in capsys.readouterr().out
    int8 = OnnxModel(out8)
    assert int8.config.info["onnx"] == {"precision": "int8", "calibration": "data, 24 faces drawn with seed 0",
                                        "calibration_faces": 24}
    assert main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx"), "--float32"]) == 0
    assert out8.stat().st_size < 0.4 * (tmp_path / "m.onnx").stat().st_size
    names = [n.op_type for n in onnx.load(str(out8)).graph.node]
    assert "QuantizeLinear" in names and "DequantizeLinear" in names
    c = model.config.crop
    x = np.stack([cv2.resize(f, (c.width, c.height), interpolation=cv2.INTER_AREA) for f in faces])
    assert np.abs(int8.predict_proba(x) - Model.load(tmp_path / "m.npz").predict_proba(x)).max() < 0.05
    assert main(["export", str(tmp_path / "m.npz"), str(out8), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "m.npz"), str(out8), "--calibration", str(tmp_path / "data")]) == 2


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


def test_training_without_torch_says_what_to_install(tmp_path):
    """The quick start's first line installs prediction only: a training command or name then asks
    for PyTorch in one line, not a traceback."""
    block = "import sys; sys.modules['torch'] = None; "  # `import torch` fails, as where it is not installed
    r = subprocess.run([sys.executable, "-c", block + "from mimika.cli import main; sys.exit(main(sys.argv[1:]))",
                        "train", "--data", str(tmp_path), "--out", str(tmp_path / "m.npz")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("mimika: error: `mimika train` needs PyTorch, which this install leaves out "
                                "(prediction does not need it): pip install 'mimika[train]'")
    r = subprocess.run([sys.executable, "-c", block + "import mimika; mimika.load_model('ferplus')"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "mimika.load_model needs PyTorch" in r.stderr.splitlines()[-1]


def test_recognizer_accepts_npz_onnx_and_loaded_models(astronaut_path):
    files = shipped_models()[mimika.network.config.DEFAULT_MODEL]
    results = [mimika.Recognizer(m).get(astronaut_path)[0]
               for m in (None, files[".onnx"], files[".npz"], Model.load(files[".npz"]))]
    assert len({f.box for f in results}) == 1 and len({f.label for f in results}) == 1
    assert results[0].scores == results[1].scores and results[2].scores == results[3].scores
    tolerance = 0.01 if _int8(OnnxModel(files[".onnx"])) else 1e-5  # the shipped default is INT8
    assert max(abs(f.scores[results[0].label] - results[2].score) for f in results) < tolerance


# --- hostile ONNX files: one clean line; never NaN, never silently other answers ---

@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    return export_onnx(create_model("vgg48", seed=1), path, half=False)


def _mutated(src, out, mutate, keep_checksum=True):
    proto = onnx.load(str(src))
    mutate(proto)
    if not keep_checksum:
        kept = [p for p in proto.metadata_props if p.key != "mimika_sha256"]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
    out.write_bytes(proto.SerializeToString())
    return out


def _scale_first_weight(factor):
    def mutate(proto):
        from onnx import numpy_helper
        init = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).size > 100)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))
    return mutate


def test_damaged_onnx_weights_are_refused(small_onnx, tmp_path):
    damaged = _mutated(small_onnx, tmp_path / "d.onnx", _scale_first_weight(1.01))
    with pytest.raises(MimikaError, match="damaged model file"):
        OnnxModel(damaged)
    raw = bytearray(small_onnx.read_bytes())
    raw[len(raw) // 2] ^= 0x40  # a flipped bit in the middle of the weights
    (tmp_path / "flip.onnx").write_bytes(bytes(raw))
    with pytest.raises(MimikaError, match="flip.onnx: (damaged|not a readable)"):
        OnnxModel(tmp_path / "flip.onnx")


def test_nan_weights_are_an_error_never_a_nan_probability(small_onnx, tmp_path):
    nan = _mutated(small_onnx, tmp_path / "nan.onnx", _scale_first_weight(np.nan), keep_checksum=False)
    with pytest.raises(MimikaError, match="nan.onnx: the model's output is not a number"):
        OnnxModel(nan, allow_unchecked=True)


def test_graphs_that_fail_at_run_time_fail_at_load(small_onnx, tmp_path):
    def fixed_batch(proto):  # a Reshape to a fixed batch of 1 fails on the probe's batch of 2
        from onnx import helper, numpy_helper
        g = proto.graph
        out = g.output[0].name
        g.initializer.append(numpy_helper.from_array(np.array([1, -1], np.int64), "shape1"))
        g.node.append(helper.make_node("Reshape", [out, "shape1"], ["reshaped"]))
        g.output[0].name = "reshaped"
        del g.output[0].type.tensor_type.shape.dim[:]
    bad = _mutated(small_onnx, tmp_path / "bad.onnx", fixed_batch, keep_checksum=False)
    with pytest.raises(MimikaError, match="bad.onnx: (the model failed to run|the model's output has shape)"):
        OnnxModel(bad, allow_unchecked=True)


def test_onnx_without_config_or_with_wrong_config(small_onnx, tmp_path):
    def drop_config(proto):
        kept = [p for p in proto.metadata_props if p.key != "mimika_config"]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
    with pytest.raises(MimikaError, match="without mimika's configuration"):
        OnnxModel(_mutated(small_onnx, tmp_path / "noconf.onnx", drop_config))

    def bad_labels(proto):
        for p in proto.metadata_props:
            if p.key == "mimika_config":
                conf = json.loads(p.value)
                conf["labels"] = conf["labels"][:3]
                p.value = json.dumps(conf)
    with pytest.raises(MimikaError, match="damaged model file"):  # the checksum covers the config too
        OnnxModel(_mutated(small_onnx, tmp_path / "labels.onnx", bad_labels))
    with pytest.raises(MimikaError, match="output has shape"):  # and without one, the probe catches it
        OnnxModel(_mutated(small_onnx, tmp_path / "labels2.onnx", bad_labels, keep_checksum=False),
                  allow_unchecked=True)
