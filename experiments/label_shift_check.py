"""Experiment L3 (issue #11): re-weighting a set's answers by its class shares, estimated from the
answers alone (label-shift adaptation), for sets that show the emotions in other proportions than
the training photos (posed faces in a lab, an audience).

    python experiments/label_shift_check.py                                            # ferplus
    python experiments/label_shift_check.py --model fer2013 --data ../shared/data/fer2013/fer2013.csv.gz
    python experiments/label_shift_check.py --after                # + PrivateTest and CK+ (measured after)

The estimator is the EM of Saerens, Latinne and Decaestecker (2002): from the training class shares
the model stores (`mimika calibrate`) and its temperature-scaled probabilities, no label of the set;
the training shares may count as some pseudo-faces (a Dirichlet prior; 0 is maximum likelihood).
Validation (what decides): sets drawn with replacement (seed 0) from PublicTest in three kinds of
proportions: as in the Training faces (no shift: adaptation must not hurt), every class equally
common, and shares from a flat Dirichlet; several set sizes, 40 sets each. Printed: mean accuracy /
balanced accuracy / calibration error (15 bins), plain (training prior) and adapted.
`--after`: the decision's consequences on data no choice used, once: the model's PrivateTest and CK+
peaks through the CNN detector (FER+ models: neutral counted wrong, and answers among the 7).
"""

import argparse
from pathlib import Path

import numpy as np

from mimika.network.config import probabilities
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset
from mimika.prepare.detection import get_detector
from mimika.reports.evaluation import among, report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def reweight(probs: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Posteriors under class shares `source` turned into posteriors under `target` (Bayes' rule)."""
    q = probs * (target / source)
    return q / q.sum(axis=1, keepdims=True)


def adapt(probs: np.ndarray, source: np.ndarray, pseudo_faces: float = 0.0, rounds: int = 1000) -> np.ndarray:
    """The posteriors re-weighted by the set's class shares, estimated by EM from `source`."""
    prior = source.copy()
    for _ in range(rounds):
        new = (reweight(probs, source, prior).sum(axis=0) + pseudo_faces * source) / (len(probs) + pseudo_faces)
        moved, prior = np.abs(new - prior).max(), new
        if moved < 1e-6:
            break
    return reweight(probs, source, prior)


def draw(y: np.ndarray, shares: np.ndarray, size: int, rng) -> np.ndarray:
    """Indices of a set of `size` faces whose classes follow `shares`."""
    counts = rng.multinomial(size, shares)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), n) for c, n in enumerate(counts) if n])


def figures(y, probs, labels) -> list[float]:
    r = report(y, probs.argmax(1), labels, probs)
    return [r["accuracy"], r["balanced_accuracy"], r["ece"]]


def cell(values) -> str:
    return "{:.4f} / {:.4f} / {:.3f}".format(*values)


def header(first: list[str], columns: list[str]) -> str:
    names = first + columns
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def shifted_sets(y: np.ndarray, source: np.ndarray, sizes: list[int], sets: int):
    """(proportions, size, index arrays of `sets` sets drawn from the faces with classes `y`), for
    sets in the Training proportions, every class equally common, and flat-Dirichlet proportions."""
    present = np.isin(np.arange(len(source)), y)
    rng = np.random.default_rng(0)
    kinds = {"training": lambda: source * present, "equal": lambda: present * 1.0,
             "Dirichlet": lambda: rng.dirichlet(np.ones(len(source))) * present}
    for kind, shares_of in kinds.items():
        for size in sizes:
            yield kind, size, [draw(y, (shares := shares_of()) / shares.sum(), size, rng) for _ in range(sets)]


def mean_row(kind: str, size: int, runs: list) -> str:
    return f"| {kind} | {size} | " + " | ".join(cell(v) for v in np.mean(runs, axis=0)) + " |"


def validation(model, val, source, sizes, pseudo, sets) -> None:
    probs = model.predict_proba(val.faces)  # under the training prior: what adaptation starts from
    print(header(["proportions", "faces", "plain"], [f"adapted, {p:g} pseudo-faces" for p in pseudo]))
    for kind, size, draws in shifted_sets(val.y, source, sizes, sets):
        runs = [[figures(val.y[i], q, model.labels) for q in [probs[i]] + [adapt(probs[i], source, p) for p in pseudo]]
                for i in draws]
        print(mean_row(kind, size, runs), flush=True)


def after(model, data, source, pseudo) -> None:
    """PrivateTest and CK+ peaks, plain and adapted: measured once, after the decision."""
    ck = load_dataset(SHARED / "ckplus", model.config.crop, crop="detect", detector=get_detector("cnn"))
    ck = ck.known_to(model.labels)[0].relabel(model.labels)  # FER2013 models: CK+ without contempt
    sets = [("PrivateTest (in domain)", data.split("PrivateTest"), False),
            ("CK+ peaks, neutral counted wrong", ck, False), ("CK+ peaks, answers among their classes", ck, True)]
    print(header(["tested on", "n", "plain"], [f"adapted, {p:g} pseudo-faces" for p in pseudo]))
    for name, s, restrict in sets:
        probs = model.predict_proba(s.faces)
        row = [probs] + [adapt(probs, source, p) for p in pseudo]
        row = [among(q, np.unique(s.y)) if restrict else q for q in row]
        print(f"| {name} | {len(s)} | " + " | ".join(cell(figures(s.y, q, model.labels)) for q in row) + " |",
              flush=True)


def fit_scaling(z: np.ndarray, y: np.ndarray, n_classes: int, biases: bool) -> tuple[float, np.ndarray]:
    """(a, b) minimising the NLL of softmax(a z + b): temperature scaling (a = 1/T, b = 0), or with
    `biases` also a bias per class (bias-corrected temperature scaling, Alexandari et al. 2020); both
    fitted the same way, so they compare like for like."""
    import torch
    zt, yt = torch.tensor(z, dtype=torch.float64), torch.tensor(y, dtype=torch.long)
    a = torch.ones(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=biases)
    opt = torch.optim.LBFGS([a, b] if biases else [a], max_iter=1000, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a * zt + b, yt)
        loss.backward()
        return loss
    opt.step(closure)
    return float(a.detach()), b.detach().numpy()


def bias_corrected_check(model, val, source, sizes, sets) -> None:
    """L3b: temperature scaling alone against bias-corrected temperature scaling, each fitted on one
    half of PublicTest (seed 0) and tested on the other, plain and adapted (maximum likelihood)."""
    z = model.config.prediction_logits(model.logits, val.faces)
    fit = np.random.default_rng(0).permutation(len(val)) < len(val) // 2
    scaled = {}
    for name, biases in [("temperature", False), ("bias-corrected", True)]:
        a, b = fit_scaling(z[fit], val.y[fit], len(model.labels), biases)
        scaled[name] = probabilities(z[~fit], 1 / a, b / a)  # softmax(a z + b)
        print(f"{name}: a {a:.4f}, biases " + " ".join(f"{v:+.2f}" for v in b))
    y = val.y[~fit]
    print(header(["proportions", "faces"], ["temperature, plain", "temperature, adapted", "bias-corrected, plain",
                                            "bias-corrected, adapted"]))
    for kind, size, draws in shifted_sets(y, source, sizes, sets):
        runs = [[figures(y[i], q, model.labels) for p in scaled.values() for q in (p[i], adapt(p[i], source))]
                for i in draws]
        print(mean_row(kind, size, runs), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ferplus")
    ap.add_argument("--data", default=str(SHARED / "fer2013" / "fer2013new.csv"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 300, 1000])
    ap.add_argument("--pseudo-faces", type=float, nargs="+", default=[0, 10, 100])
    ap.add_argument("--sets", type=int, default=40)
    ap.add_argument("--after", action="store_true", help="also PrivateTest and CK+ peaks (measured after)")
    ap.add_argument("--bias-corrected", action="store_true", help="L3b: temperature scaling against "
                    "bias-corrected temperature scaling before adaptation, on halves of PublicTest")
    a = ap.parse_args()
    model = load_predictor(a.model)
    data = load_dataset(a.data, model.config.crop).relabel(model.labels)
    source = np.asarray(model.config.class_prior, np.float64)  # the training shares `mimika calibrate` stored
    if a.bias_corrected:
        return bias_corrected_check(model, data.split("PublicTest"), source, a.sizes, a.sets)
    validation(model, data.split("PublicTest"), source, a.sizes, a.pseudo_faces, a.sets)
    if a.after:
        after(model, data, source, a.pseudo_faces)


if __name__ == "__main__":
    main()
