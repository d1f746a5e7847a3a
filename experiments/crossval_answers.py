"""A CK+ cross-validation's answers, face by face, against a model that never trained on CK+ (#11).

    python experiments/crossval_answers.py reports/ckplus-joint-neutral-10fold --against ferplus
    python experiments/crossval_answers.py runs/e19-joint-10fold --also reports/ckplus-joint-ferplus-10fold

`mimika crossval` keeps every test face's answer (by its source file) in crossval.json (in
fold-N.json while it runs: a partial run is read from those). Both the folds' answers and the
other model's (whole frames through the CNN detector and its aligned crop, as `mimika predict`
reads a photo) are scored in two views of the cross-domain protocol: the labelled peaks with a
neutral answer counted wrong, and every frame the cross-validation tested (with `--with-neutral`:
the 8 classes). Each line ends with the faces only the folds / only the other model get right and
the exact McNemar p-value of that split. `--also` adds other cross-validations of the same frames
(another recipe on the same folds), each split against the first.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mimika.common.metrics import mcnemar_cells
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset
from mimika.prepare.detection import PRESETS
from mimika.reports.evaluation import recall_line, report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def fold_answers(folder: Path) -> dict[str, str]:
    """Source file (resolved: run from where the cross-validation ran) -> the answer of the fold
    that tested it."""
    summary = folder / "crossval.json"
    folds = (json.loads(summary.read_text())["folds"] if summary.is_file()
             else [json.loads(p.read_text()) for p in sorted(folder.glob("fold-*.json"))])
    if not folds or "answers" not in folds[0]:
        raise SystemExit(f"{folder}: no per-face answers (cross-validations from before f0d198c keep none)")
    return {str(Path(source).resolve()): label for fold in folds for source, label in fold["answers"].items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--against", default="ferplus")
    ap.add_argument("--also", type=Path, nargs="*", default=[], help="other cross-validations of the same frames")
    ap.add_argument("--data", default=str(SHARED / "ckplus"))
    a = ap.parse_args()
    answers = fold_answers(a.folder)
    also = {str(f): fold_answers(f) for f in a.also}
    other = load_predictor(a.against)
    labels = other.labels
    data = load_dataset(a.data, other.config.crop, detector=PRESETS["cnn"], with_neutral=True).relabel(labels)
    sources = [str(Path(s).resolve()) for s in data.sources]
    tested = np.array([s in answers for s in sources])
    if not tested.any():
        raise SystemExit(f"{a.data}: none of its frames is among {a.folder}'s answers")
    data = data.subset(np.flatnonzero(tested))
    kept = [s for s, t in zip(sources, tested) if t]

    def answered(name: str, by_source: dict[str, str]) -> np.ndarray:
        """A cross-validation's answers to the tested frames, as label indices."""
        if missing := sum(s not in by_source for s in kept):
            raise SystemExit(f"{name}: {missing} of the frames {a.folder} tested have no answer there")
        return np.array([labels.index(by_source[s]) for s in kept])

    folds = answered(str(a.folder), answers)
    also_pred = {name: answered(name, theirs) for name, theirs in also.items()}
    mine = other.predict_proba(data.faces).argmax(1)
    print(f"{a.folder}: {len(data)} frames tested, {len(set(data.subjects.tolist()))} people; against {a.against}")
    print("| view | model | n | accuracy | balanced accuracy | recall per class | only folds / only other | McNemar p |")
    print("|---|---|---|---|---|---|---|---|")
    views = {"peaks, neutral counted wrong": data.y != labels.index("neutral"),
             "every frame tested": np.ones(len(data), bool)}
    for view, mask in views.items():
        y = data.y[mask]
        right = folds[mask] == y
        mine_right = mine[mask] == y
        rows = [("folds", folds[mask], mine_right), (a.against, mine[mask], mine_right)]
        rows += [(name, pred[mask], pred[mask] == y) for name, pred in also_pred.items()]
        for name, pred, other_right in rows:
            rep = report(y, pred, labels)
            print(f"| {view} | {name} | {len(y)} | {rep['accuracy']:.3f} | {rep['balanced_accuracy']:.3f} | {recall_line(rep)} | "
                  f"{mcnemar_cells(right, other_right)} |", flush=True)


if __name__ == "__main__":
    main()
