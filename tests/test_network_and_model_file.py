"""Module 2: the original network, and model files that rebuild it without pickle."""

import json
import zipfile

import numpy as np
import pytest
import torch

from mimika import MimikaError, Model, create_model, load_model
from mimika.network.architectures import SeedCNN


def test_seed_is_the_original_cnn():
    net = SeedCNN(7)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 32, (5, 5)), (32, 32, (5, 5))]
    feats = net.features(torch.zeros(1, 1, 96, 96))
    assert feats.shape == (1, 32, 21, 21)  # 96 -conv5-> 92 -pool-> 46 -conv5-> 42 -pool-> 21
    dense = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(32 * 21 * 21, 256), (256, 7)]
    drops = [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.5, 0.5]
    # Glorot-uniform: |w| <= sqrt(6 / (fan_in + fan_out)), biases zero
    bound = np.sqrt(6 / (25 + 32 * 25))
    assert convs[0].weight.abs().max() <= bound and convs[0].weight.abs().max() > 0.9 * bound
    assert all(float(m.bias.detach().abs().max()) == 0 for m in convs + dense)


def test_predict_proba_is_a_distribution():
    model = create_model("seed", seed=0)
    p = model.predict_proba(np.random.default_rng(0).integers(0, 255, (5, 96, 96), dtype=np.uint8))
    assert p.shape == (5, 7)
    assert (p >= 0).all() and (p <= 1).all() and np.allclose(p.sum(1), 1)
    with pytest.raises(MimikaError, match="96"):
        model.predict_proba(np.zeros((2, 48, 48), np.uint8))


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-6), ("float16", 2e-2)])
def test_save_and_rebuild(tmp_path, dtype, tol):
    model = create_model("seed", seed=1)
    model.config.info["note"] = "kept"
    path = model.save(tmp_path / "model.npz", dtype=dtype)
    with np.load(path, allow_pickle=False) as z:  # no pickle anywhere in the file
        assert "__meta__" in z.files and all(z[k].dtype != object for k in z.files)
    again = Model.load(path)
    assert again.labels == model.labels and again.config.arch == "seed"
    assert again.config.crop == model.config.crop and again.config.info["note"] == "kept"
    x = np.random.default_rng(0).integers(0, 255, (4, 96, 96), dtype=np.uint8)
    assert np.abs(again.predict_proba(x) - model.predict_proba(x)).max() < tol


def test_corrupt_foreign_and_missing_model_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __meta__=np.array([{"a": 1}], dtype=object))
    truncated = tmp_path / "truncated.npz"
    good = create_model().save(tmp_path / "good.npz")
    truncated.write_bytes(good.read_bytes()[:5000])
    wrong = tmp_path / "wrong.npz"
    m = create_model()
    meta, arrays = m.file_contents()
    arrays.pop("param/head.weight")
    from mimika.common.container import write_container
    from mimika.network.config import MODEL_FORMAT
    write_container(wrong, MODEL_FORMAT, meta, arrays)
    for path, msg in [(junk, "not a mimika model file"), (foreign, "not a mimika model file"),
                      (pickled, "not a mimika model file"), (truncated, "not a mimika model file"),
                      (wrong, "does not fit"), (tmp_path / "nope.npz", "no such model file")]:
        with pytest.raises(MimikaError, match=msg) as e:
            Model.load(path)
        assert path.name in str(e.value) and "unsafe" not in str(e.value)
    with pytest.raises(MimikaError, match="no such model file or shipped model"):
        load_model("no-such-model")


def test_head_reset_keeps_known_rows():
    model = create_model("seed", seed=0)
    old = model.net.head.weight.detach().clone()
    model.with_labels(["neutral"] + model.labels)
    assert model.net.head.out_features == 8
    assert torch.equal(model.net.head.weight[1:], old)


# --- hostile model files: one clean line, never other answers ---

def checksummed(doc: dict, arrays: dict) -> dict:
    from mimika.common.container import content_checksum
    return {**doc, "checksum": content_checksum(doc, arrays)}


def _npz_with(tmp_path, name, meta=None, arrays=None, raw_meta=None):
    """A model-file-shaped .npz with the given JSON document (or raw text) and arrays."""
    import io
    import json as _json
    buf = io.BytesIO()
    doc = raw_meta if raw_meta is not None else _json.dumps(meta)
    np.savez(buf, __meta__=np.array(doc), **(arrays or {}))
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return path


def test_damaged_weights_are_refused_not_used(tmp_path):
    from mimika.common.container import read_container, write_container
    from mimika.network.config import MODEL_FORMAT
    model = create_model("seed", seed=0)
    meta, arrays = model.file_contents()
    path = write_container(tmp_path / "m.npz", MODEL_FORMAT, meta, arrays)
    # change one weight and write the archive again with valid zip CRCs: only the checksum can tell
    meta2, arrays2 = read_container(path, MODEL_FORMAT)
    arrays2["param/head.bias"] = arrays2["param/head.bias"] + np.float32(0.5)
    damaged = _npz_with(tmp_path, "damaged.npz", meta2, arrays2)
    with pytest.raises(MimikaError, match="damaged model file"):
        Model.load(damaged)


@pytest.mark.parametrize("case, message", [
    ("nested", "not a mimika model file or damaged"),
    ("wrong_types", "model config"),
    ("labels_not_list", "'labels' must be a list"),
    ("huge_crop", "crop width and height"),
    ("absurd_shape", "does not fit its"),
    ("object_array", "not allowed"),
    ("face_cache", "expected 'mimika-model'"),
])
def test_hostile_model_files_end_in_one_line(tmp_path, case, message):
    from mimika.network.config import MODEL_FORMAT
    model = create_model("seed", seed=0)
    meta, arrays = model.file_contents()
    doc = {"format": MODEL_FORMAT, "format_version": 2, **meta}  # the checksum is added below: a hostile file
    if case == "nested":                                           # can carry a right one (it is not a signature)
        path = _npz_with(tmp_path, "m.npz", raw_meta="[" * 100000 + "]" * 100000)
    elif case == "wrong_types":
        doc["model"]["std"] = "wide"
        path = _npz_with(tmp_path, "m.npz", checksummed(doc, arrays), arrays)
    elif case == "labels_not_list":
        doc["model"]["labels"] = {"a": 1}
        path = _npz_with(tmp_path, "m.npz", checksummed(doc, arrays), arrays)
    elif case == "huge_crop":
        doc["model"]["crop"]["width"] = 10 ** 9
        path = _npz_with(tmp_path, "m.npz", checksummed(doc, arrays), arrays)
    elif case == "absurd_shape":  # a valid archive whose entry header claims 10^12 floats for its 1 KB
        path = _npz_with(tmp_path, "m.npz", doc, arrays)
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
        header = header.ljust(118) + "\n"
        entry = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(1024)
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("param/extra.npy", entry)
    elif case == "object_array":
        path = tmp_path / "m.npz"
        np.savez(path, __meta__=np.array(json.dumps(doc)), evil=np.array([{"a": 1}], dtype=object))
    else:
        doc["format"] = "mimika-faces"
        path = _npz_with(tmp_path, "m.npz", checksummed(doc, arrays), arrays)
    with pytest.raises(MimikaError, match=message) as e:
        Model.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_encrypted_and_unsupported_zip_entries(tmp_path):
    good = create_model("seed", seed=0).save(tmp_path / "good.npz")
    data = bytearray(good.read_bytes())
    enc = bytearray(data)
    enc[6] |= 1  # general-purpose flag bit 0 of the first local header: "encrypted"
    central = enc.find(b"PK\x01\x02")
    enc[central + 8] |= 1
    (tmp_path / "enc.npz").write_bytes(bytes(enc))
    method = bytearray(data)
    method[8] = 99  # compression method 99 (AES) in the first local header...
    method[method.find(b"PK\x01\x02") + 10] = 99  # ...and in its central-directory entry
    (tmp_path / "method.npz").write_bytes(bytes(method))
    for name in ("enc.npz", "method.npz"):
        with pytest.raises(MimikaError, match="not a mimika model file or damaged"):
            Model.load(tmp_path / name)


def test_a_changed_label_list_is_damage_too(tmp_path):
    from mimika.common.container import read_container
    from mimika.network.config import MODEL_FORMAT
    path = create_model("seed", seed=0).save(tmp_path / "m.npz")
    meta, arrays = read_container(path, MODEL_FORMAT)
    meta["model"]["labels"] = meta["model"]["labels"][::-1]  # the same weights, other answers
    with pytest.raises(MimikaError, match="damaged model file"):
        Model.load(_npz_with(tmp_path, "swapped.npz", meta, arrays))
