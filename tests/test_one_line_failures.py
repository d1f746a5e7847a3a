"""Failures said in one line, as everywhere else (issue #31, item 5): a FIFO in a class folder is
skipped with the reason, as in a CK+ tree, not silently; ONNX Runtime's own log line for a
malformed graph stays out of the way of mimika's one-line error unless --verbose."""

from __future__ import annotations

import os

import cv2
import pytest

from mimika import cli
from mimika.common import sessions


def test_a_fifo_in_a_class_folder_is_skipped_with_the_reason(tmp_path, astronaut_face, capsys):
    from mimika.prepare.crop import CropSpec
    from mimika.prepare.datasets.folders import load_class_folders
    for label, face in (("happiness", astronaut_face), ("surprise", astronaut_face[::-1])):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "d" / label / f"s{i}.png"), face)
    fifo = tmp_path / "d" / "surprise" / "s9.png"
    os.mkfifo(fifo)  # nobody writes to it: reading it would block
    data = load_class_folders(tmp_path / "d", CropSpec(), crop="whole")
    assert len(data) == 4 and len(data.skipped) == 1
    assert data.skipped[0].startswith(str(fifo)) and "FIFO" in data.skipped[0]
    assert cli.main(["evaluate", "--model", "seed", "--data", str(tmp_path / "d"), "--crop", "whole"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "s9.png" in line] == [f"skipped {data.skipped[0]}"]


def _malformed_graph(path) -> None:
    """The shipped seed model with a Conv whose auto_pad no runtime knows, checksum renewed: a
    model file mimika takes that ONNX Runtime refuses while it initializes the session (where it
    logs an error line of its own)."""
    onnx = pytest.importorskip("onnx")
    import mimika
    from mimika.network.predictor import CHECKSUM_KEY, METADATA_KEY, model_checksum
    m = onnx.load(str(mimika.shipped_models()["seed"][".onnx"]))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    for a in [a for a in conv.attribute if a.name == "auto_pad"]:
        conv.attribute.remove(a)
    conv.attribute.append(onnx.helper.make_attribute("auto_pad", "BOGUS"))
    meta = {p.key: p for p in m.metadata_props}
    meta[CHECKSUM_KEY].value = model_checksum(m.SerializeToString(), meta[METADATA_KEY].value)
    onnx.save(m, str(path))


def test_onnx_runtime_logs_nothing_before_the_one_line_error_unless_verbose(tmp_path, astronaut_path, capfd):
    bad = tmp_path / "bad.onnx"
    _malformed_graph(bad)
    try:
        assert cli.main(["predict", "--model", str(bad), str(astronaut_path)]) == 2
        err = capfd.readouterr().err
        assert err.startswith(f"mimika: error: {bad}: not a readable ONNX model") and err.count("\n") == 1, err
        assert "AutoPadType" in err  # what ONNX Runtime said is in mimika's line
        assert cli.main(["predict", "--model", str(bad), str(astronaut_path), "--verbose"]) == 2
        err = capfd.readouterr().err
        assert "onnxruntime" in err.splitlines()[0] and err.splitlines()[-1].startswith("mimika: error: ")
    finally:
        sessions.set_verbose(False)
