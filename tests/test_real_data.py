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
