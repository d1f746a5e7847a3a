"""Import paths of the release before the wings (`mimika.images`, `mimika.runtime`, ...) keep
working for one release: each is the module at its new place, with a DeprecationWarning naming it.
`mimika.training` and `mimika.recognition` are packages now and export what the modules did."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module (below mimika.) -> its place now; removed in the release after 0.3
MOVED = {
    "errors": "common.errors", "fileio": "common.fileio", "labels": "common.labels",
    "progress": "common.progress", "metrics": "common.metrics",
    "images": "prepare.images", "video": "prepare.video", "detection": "prepare.detection",
    "centerface": "prepare.centerface", "haar": "prepare.haar", "boxes": "prepare.boxes", "crop": "prepare.crop",
    "datasets": "prepare.datasets",
    "nets": "network.architectures", "model": "network.model", "config": "network.config",
    "container": "common.container", "export": "network.export", "runtime": "network.predictor",
    "options": "training.options", "schedules": "training.schedules", "checkpoint": "training.checkpoint",
    "augment": "training.augment", "distributed": "training.distributed", "crossval": "training.crossval",
    "calibration": "training.calibration",
    "results": "recognition.results", "tracking": "recognition.tracking", "annotate": "recognition.annotate",
    "parallel": "recognition.parallel",
    "evaluation": "reports.evaluation", "plots": "reports.plots",
}


def moved_to(fullname: str) -> str | None:
    """The new name of an old module path (`mimika.datasets.registry` too), or None."""
    parts = fullname.split(".")
    if len(parts) < 2 or parts[0] != "mimika" or parts[1] not in MOVED:
        return None
    return ".".join(["mimika", MOVED[parts[1]], *parts[2:]])


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and hands back the module at its new place (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        new = moved_to(fullname)
        return importlib.util.spec_from_loader(fullname, self) if new else None

    def create_module(self, spec):
        new = moved_to(spec.name)
        warnings.warn(f"{spec.name} is now {new}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass  # the module at its new place is already executed


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())  # before the path finder, which would load a second copy
