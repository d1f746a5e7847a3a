"""ONNX Runtime settings shared by every network mimika runs (the classifier, the face detector):
which providers run it, how its threads behave, and what it logs.

ONNX Runtime logs its own errors in red on stderr (a malformed graph: "[E:onnxruntime:...]
Exception during initialization") before mimika's one-line error, which already quotes them:
only fatal messages get through unless `set_verbose(True)` (the command's --verbose)."""

from __future__ import annotations

from .choices import DEVICES
from .errors import MimikaError

_QUIET, _VERBOSE = 4, 3  # ONNX Runtime's severities: 3 errors (and fatal), 4 fatal only
_log_severity = _QUIET


def set_verbose(on: bool = True) -> None:
    """Let ONNX Runtime's own error messages through to stderr (sessions created from now on)."""
    global _log_severity
    _log_severity = _VERBOSE if on else _QUIET


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
    """ONNX Runtime settings shared by the classifier and the face detector: quiet (`set_verbose`),
    and no busy-waiting between runs (spinning threads would steal the cores from the other network)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = _log_severity
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return options
