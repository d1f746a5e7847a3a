"""What a larger input or a wider network costs at prediction time (issue #28 item 3): for each
candidate network, its INT8 ONNX file as shipped models are made (flip test-time augmentation),
classification faces/s on a batch of face crops and one 640x480 photo (CNN detector + classify),
medians, with the ratio to `vgg48` at 48 px measured in the same run.

    bash bench/quiet.sh python bench/input_size.py [--repeats 7] [--batch 512]

Speed does not depend on what the weights learned, so the networks are untrained (seed 0) and
their INT8 ranges are calibrated on crops of the bundled astronaut photo. The default's bound
(issue #28): >= 1,000 faces/s with its augmentation and <= 14 ms per photo.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detection import photo_640x480_colour  # noqa: E402
from predict import median_time  # noqa: E402

import mimika  # noqa: E402
from mimika.api import starting_model  # noqa: E402
from mimika.network.export import export_onnx, sample_faces  # noqa: E402

#: (architecture, input side): today's default's network first, the ratios' base
CANDIDATES = [("vgg48", 48), ("vgg48", 56), ("vgg48", 64), ("vgg48w", 48)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=512)
    a = ap.parse_args()
    photo = photo_640x480_colour()
    print(f"INT8 ONNX, flip; medians of {a.repeats} runs; {a.batch} crops a batch; photo 640x480, one face\n")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for arch, side in CANDIDATES:
            rate, per_photo = measure(arch, side, Path(tmp), photo, a.repeats, a.batch)
            base = base or (rate, per_photo)
            print(f"{arch:<7} {side} px  {rate:7.0f} faces/s ({rate / base[0]:.2f}x)   {per_photo:6.2f} ms per photo "
                  f"({per_photo / base[1]:.2f}x)")


def measure(arch: str, side: int, tmp: Path, photo: np.ndarray, repeats: int, batch: int) -> tuple[float, float]:
    """One candidate's classification faces/s and ms per photo, its INT8 file written into `tmp`."""
    start = mimika.Model.create(arch, seed=0)
    start.save(tmp / "start.npz")
    model = starting_model(tmp / "start.npz", input_size=side)
    model.config.tta = "flip"
    path = export_onnx(model, tmp / f"{arch}-{side}.onnx", quantize=True,
                       calibration=sample_faces(model.config.crop, 64), calibration_source="astronaut crops")
    onnx = mimika.OnnxModel(path)
    crops = np.repeat(sample_faces(onnx.config.crop, 1), batch, axis=0)
    rate = batch / median_time(lambda: onnx.predict_proba(crops), repeats)
    rec = mimika.Recognizer(onnx)
    return rate, median_time(lambda: rec.get(photo, color="bgr"), repeats * 3) * 1000

if __name__ == "__main__":
    main()
