"""ONNX Runtime settings shared by every network mimika runs (the classifier, the face detector):
which providers run it, and how its threads behave."""

from __future__ import annotations

from .choices import DEVICES
from .errors import MimikaError


def providers(device: str = "auto") -> list[str]:
    """ONNX Runtime providers for `device`, best first: CUDA when asked or available, then the CPU."""
    import onnxruntime as ort
    if device not in DEVICES:
        raise MimikaError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise MimikaError("--device cuda: this ONNX Runtime has no CUDA provider (install mimika's gpu extra, "
                          "which brings onnxruntime-gpu: pip install 'mimika[gpu]')")
    return (["CUDAExecutionProvider"] if has_cuda and device != "cpu" else []) + ["CPUExecutionProvider"]


def session_options(threads: int | None = None):
    """ONNX Runtime settings shared by the classifier and the face detector: quiet, and no
    busy-waiting between runs (spinning threads would steal the cores from the other network)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return options
