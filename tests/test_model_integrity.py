"""Model files are what they claim (issue #29 items 6 and 7): a file without a checksum (an .npz of
format version 1, an ONNX export without one) is refused unless the user asks for it by name, and
then a warning says so; every shipped and exported file carries one; the checksum reader walks
every protobuf wire type (groups too) or refuses in one line."""

import io
import json
import warnings
import zipfile

import fuzzing as F
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_datasets import run_script

from mimika import MimikaError, Model, OnnxModel, create_model, export_onnx, load_predictor, shipped_models
from mimika.cli import main
from mimika.common.container import UNCHECKED_ENV, UncheckedFileWarning, read_container
from mimika.network.config import MODEL_FORMAT
from mimika.network.predictor import CHECKSUM_KEY, graph_bytes

varint = F.varint


@pytest.fixture(autouse=True)
def no_permission_from_outside(monkeypatch):
    monkeypatch.delenv(UNCHECKED_ENV, raising=False)


@pytest.fixture(scope="module")
def seed_npz(tmp_path_factory):
    return create_model("seed", seed=0).save(tmp_path_factory.mktemp("npz") / "m.npz")


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    return export_onnx(create_model("seed", seed=1), tmp_path_factory.mktemp("onnx") / "m.onnx", half=False)


def crops(model, n=4):
    c = model.config.crop
    return np.random.default_rng(0).integers(0, 256, (n, c.height, c.width), dtype=np.uint8)


def npz_without_checksum(src, out, version=1, bias=2.0):
    """The model file `src` as format `version` (None: no version field), its first class's head
    bias moved by `bias`: written as an older mimika wrote it, with valid zip CRCs."""
    meta, arrays = read_container(src, MODEL_FORMAT)
    meta = {k: v for k, v in meta.items() if k not in ("checksum", "format_version")}
    if version is not None:
        meta["format_version"] = version
    moved = arrays["param/head.bias"].copy()
    moved[0] += np.float32(bias)
    arrays = dict(arrays, **{"param/head.bias": moved})
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(meta)), **arrays)
    out.write_bytes(buf.getvalue())
    return out


def onnx_without_checksum(src, out, scale=1.0):
    proto = onnx.load(str(src))
    kept = [p for p in proto.metadata_props if p.key != CHECKSUM_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if scale != 1.0:
        from onnx import numpy_helper
        init = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).size > 100)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(scale), init.name))
    out.write_bytes(proto.SerializeToString())
    return out


def refused_in_one_line(load, path):
    with pytest.raises(MimikaError, match="without a checksum") as e:
        load()
    text = str(e.value)
    assert text.startswith(str(path)) and "\n" not in text and "--allow-unchecked" in text and UNCHECKED_ENV in text


# .npz ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 0, None])
def test_an_npz_without_a_checksum_is_refused(seed_npz, tmp_path, version):
    path = npz_without_checksum(seed_npz, tmp_path / "old.npz", version)
    refused_in_one_line(lambda: Model.load(path), path)
    refused_in_one_line(lambda: load_predictor(path), path)


def test_an_npz_without_a_checksum_loads_when_asked_for_and_says_so(seed_npz, tmp_path, monkeypatch):
    path = npz_without_checksum(seed_npz, tmp_path / "old.npz")
    original = Model.load(seed_npz)
    with pytest.warns(UncheckedFileWarning, match="old.npz: .* loaded unchecked"):
        model = Model.load(path, allow_unchecked=True)
    moved = np.abs(model.predict_proba(crops(model)) - original.predict_proba(crops(model))).max()
    assert moved > 0.01  # what the check guards against: other weights, other answers
    monkeypatch.setenv(UNCHECKED_ENV, "1")
    with pytest.warns(UncheckedFileWarning):
        load_predictor(path)
    refused_in_one_line(lambda: Model.load(path, allow_unchecked=False), path)  # the parameter wins
    monkeypatch.setenv(UNCHECKED_ENV, "0")
    refused_in_one_line(lambda: Model.load(path), path)
    monkeypatch.setenv(UNCHECKED_ENV, "perhaps")
    with pytest.raises(MimikaError, match=f"{UNCHECKED_ENV}: expected 1 or 0"):
        Model.load(path)


def test_a_checked_npz_loads_without_a_warning(seed_npz):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Model.load(seed_npz)


# ONNX ---------------------------------------------------------------------------------------

def test_an_onnx_model_without_a_checksum_is_refused_unless_asked_for(small_onnx, tmp_path, monkeypatch):
    path = onnx_without_checksum(small_onnx, tmp_path / "plain.onnx", scale=1.5)
    refused_in_one_line(lambda: OnnxModel(path), path)
    refused_in_one_line(lambda: load_predictor(path), path)
    with pytest.warns(UncheckedFileWarning, match="plain.onnx: an ONNX model without a checksum"):
        model = OnnxModel(path, allow_unchecked=True)
    assert np.abs(model.predict_proba(crops(model)) - OnnxModel(small_onnx).predict_proba(crops(model))).max() > 1e-3
    monkeypatch.setenv(UNCHECKED_ENV, "1")
    with pytest.warns(UncheckedFileWarning):
        load_predictor(path)


def test_the_cli_refuses_an_unchecked_model_in_one_line_and_takes_it_when_asked(small_onnx, tmp_path, capsys,
                                                                                 astronaut_path):
    path = onnx_without_checksum(small_onnx, tmp_path / "plain.onnx")
    assert main(["predict", str(astronaut_path), "--model", str(path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mimika: error: {path}: an ONNX model without a checksum") and "\n" not in err
    with pytest.warns(UncheckedFileWarning):
        assert main(["predict", str(astronaut_path), "--model", str(path), "--json", "--allow-unchecked"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["faces"]) == 1


@pytest.mark.parametrize("name, suffix", sorted((n, s) for n, f in shipped_models().items() for s in f))
def test_every_shipped_file_carries_its_checksum(name, suffix):
    path = shipped_models()[name][suffix]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (OnnxModel if suffix == ".onnx" else Model.load)(path, allow_unchecked=False)
    if suffix == ".npz":
        meta, _ = read_container(path, MODEL_FORMAT, allow_unchecked=False)
        assert meta["format_version"] == 2 and len(meta["checksum"]) == 64
    else:
        assert CHECKSUM_KEY in {p.key for p in onnx.load(str(path)).metadata_props}


def test_exported_and_saved_files_carry_their_checksum(small_onnx, seed_npz):
    assert CHECKSUM_KEY in {p.key for p in onnx.load(str(small_onnx)).metadata_props}
    meta, _ = read_container(seed_npz, MODEL_FORMAT, allow_unchecked=False)
    assert meta["format_version"] == 2


def test_upgrade_script_gives_old_files_their_checksum(seed_npz, small_onnx, tmp_path):
    old_npz = npz_without_checksum(seed_npz, tmp_path / "old.npz", bias=0.0)
    old_onnx = onnx_without_checksum(small_onnx, tmp_path / "old.onnx")
    run = run_script("upgrade_model_files.py", str(old_npz), str(old_onnx))
    assert run.returncode == 0 and run.stdout.count("checksum written") == 2, run.stdout + run.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = Model.load(old_npz), OnnxModel(old_onnx)
    assert np.array_equal(a.predict_proba(crops(a)), Model.load(seed_npz).predict_proba(crops(a)))
    assert np.array_equal(b.predict_proba(crops(b)), OnnxModel(small_onnx).predict_proba(crops(b)))


# the protobuf walk ----------------------------------------------------------------------------

def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


# an unknown group (field 99) holding a varint, a fixed64, a string and a nested group (field 3)
GROUP = (key(99, 3) + key(1, 0) + varint(300) + key(2, 1) + bytes(8) + key(4, 2) + varint(3) + b"abc"
         + key(3, 3) + key(1, 5) + bytes(4) + key(3, 4) + key(99, 4))


def test_a_valid_model_with_an_unknown_group_field_loads(small_onnx, tmp_path):
    data = small_onnx.read_bytes()
    for where, crafted in (("first", GROUP + data), ("last", data + GROUP)):
        ort.InferenceSession(crafted, providers=["CPUExecutionProvider"])  # a valid model: ONNX Runtime reads it
        assert graph_bytes(crafted) == graph_bytes(data)
        path = tmp_path / f"group_{where}.onnx"
        path.write_bytes(crafted)
        model = OnnxModel(path)
        assert np.array_equal(model.predict_proba(crops(model)), OnnxModel(small_onnx).predict_proba(crops(model)))


@pytest.mark.parametrize("prefix, problem", [
    (key(99, 3) + key(1, 0) + varint(5), "truncated protobuf group"),  # a group never ended
    (key(99, 3) + key(98, 4), "group ends with another field number"),
    (key(99, 4), "wire type 4"),  # an end without a start
    (key(99, 6) + bytes(8), "wire type 6"),
    (key(99, 7), "wire type 7"),
], ids=["unended_group", "group_end_mismatch", "end_without_start", "wire_6", "wire_7"])
def test_a_broken_protobuf_is_refused_in_one_line(small_onnx, tmp_path, prefix, problem):
    path = tmp_path / "broken.onnx"
    path.write_bytes(small_onnx.read_bytes() + prefix)  # at the end: the fields before it are intact
    with pytest.raises(MimikaError) as e:
        OnnxModel(path)
    assert str(e.value).startswith(f"{path}: not a readable ONNX model") and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=problem):
        graph_bytes(path.read_bytes())


def test_a_second_graph_field_is_refused(small_onnx, tmp_path):
    """The protobuf parser merges a second graph into the first: the checksum must not cover only one."""
    extra = onnx.GraphProto(name="more")
    blob = extra.SerializeToString()
    path = tmp_path / "two.onnx"
    path.write_bytes(small_onnx.read_bytes() + key(7, 2) + varint(len(blob)) + blob)
    with pytest.raises(MimikaError, match="two.onnx: not a readable ONNX model .*two graphs"):
        OnnxModel(path)


# the .npz zip layer: what an entry declares, against the file ---------------------------------

def test_a_stored_entry_that_declares_other_sizes_is_refused(seed_npz, tmp_path):
    data = bytearray(seed_npz.read_bytes())
    cd = data.find(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (1 << 30).to_bytes(4, "little")  # uncompressed size 1 GiB, compressed as it was
    (tmp_path / "lie.npz").write_bytes(bytes(data))
    with pytest.raises(MimikaError, match="lie.npz: not a mimika model file or damaged .*declares"):
        Model.load(tmp_path / "lie.npz")


def test_a_deflated_model_file_still_loads(seed_npz, tmp_path):
    with zipfile.ZipFile(seed_npz) as z, zipfile.ZipFile(tmp_path / "deflated.npz", "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            out.writestr(info.filename, z.read(info))
    a, b = Model.load(tmp_path / "deflated.npz"), Model.load(seed_npz)
    assert np.array_equal(a.predict_proba(crops(a)), b.predict_proba(crops(a)))
