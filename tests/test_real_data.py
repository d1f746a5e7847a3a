"""The loaders on ../shared/data, where it is present (skipped elsewhere: the data is not ours to ship)."""

import pytest
from conftest import SHARED

from mimika import CropSpec, load_ckplus

pytestmark = pytest.mark.skipif(not (SHARED / "ckplus").is_dir(), reason="../shared/data not present")


def test_ckplus_subset_counts_match_its_readme():
    data = load_ckplus(SHARED / "ckplus", spec=CropSpec(96, 96), crop="whole")
    # 327 labelled sequences; this copy holds 2 frames of each, so the last 30% is the peak frame
    assert len(data) == 327
    assert data.class_counts() == {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25,
                                   "happiness": 69, "sadness": 28, "surprise": 83}
    assert all(s.startswith("S") for s in data.subjects)


@pytest.mark.parametrize("name,csv", [("ferplus", "fer2013new.csv"), ("fer2013", "fer2013.csv.gz"),
                                      ("multisource", "fer2013new.csv")])
def test_shipped_int8_models_agree_with_their_pytorch_weights_on_fer_faces(name, csv):
    """The INT8 prediction files against the float weights they came from, on 1,000 PublicTest faces
    (measured: top-1 agreement 99.5% / 99.6%, mean largest probability difference 0.004 / 0.005)."""
    import numpy as np

    from mimika import Model, OnnxModel, load_dataset, shipped_models
    files = shipped_models()[name]
    torch_model, onnx_model = Model.load(files[".npz"]), OnnxModel(files[".onnx"])
    faces = load_dataset(SHARED / "fer2013" / csv, torch_model.config.crop).split("PublicTest").faces[:1000]
    a, b = torch_model.predict_proba(faces), onnx_model.predict_proba(faces)
    diff = np.abs(a - b).max(axis=1)
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.98
    assert diff.mean() < 0.015 and diff.max() < 0.1
