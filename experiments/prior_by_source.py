"""Does answering under the balanced prior close the leave-one-source-out gap? (experiments.md E44)

    python experiments/prior_by_source.py [--runs runs/sources] [--data ../shared/data]

The protocol's metric is balanced accuracy, and the decision that maximises it is the balanced
prior (`--prior balanced`: each model's fitted balance removes its training prior). This reads, on
the validation parts only, today's default, each model trained without a source (on that source)
and the model trained on all of them, under the training and the balanced prior: accuracy /
balanced accuracy per source, the share of non-contempt faces answered contempt, and each model's
mean balanced accuracy over the four sources. The test parts are never read here.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from sources_table import ROOT, SOURCES, read_part, score, shipped_file  # noqa: E402

from mimika.network.config import PRIORS, with_settings  # noqa: E402
from mimika.network.predictor import load_predictor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "sources")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--baseline", default="ferplus")
    a = ap.parse_args()
    baseline, every = load_predictor(a.baseline), load_predictor(shipped_file(a.runs, None))
    models = {"default": dict.fromkeys(SOURCES, baseline),  # one model read on every source
              "without the source": {s: load_predictor(shipped_file(a.runs, s)) for s in SOURCES},
              "all sources": dict.fromkeys(SOURCES, every)}
    print("| model | prior | " + " | ".join(SOURCES) + " | mean balanced |")
    print("|---|---|" + "---|" * len(SOURCES) + "---|")
    for name, by_source in models.items():
        for prior in PRIORS:
            cells, balanced = [], []
            for source, model in by_source.items():
                model = with_settings(model, prior=prior)
                rep = score(model, read_part(source, "val", model.config.crop, a.data))
                balanced.append(rep["balanced_accuracy"])
                share = "" if rep["contempt_share"] is None else f", {rep['contempt_share']:.1%} contempt"
                cells.append(f"{rep['accuracy']:.3f} / {rep['balanced_accuracy']:.3f}{share}")
            print(f"| {name} | {prior} | " + " | ".join(cells) + f" | {statistics.mean(balanced):.3f} |", flush=True)


if __name__ == "__main__":
    main()
