"""Module 2: the original network, and model files that rebuild it without pickle."""

import zipfile

import numpy as np
import pytest
import torch

from mimika import MimikaError, Model, create_model, load_model
from mimika.nets import SeedCNN


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
    from mimika.modelfile import write_npz
    write_npz(wrong, meta, arrays)
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
