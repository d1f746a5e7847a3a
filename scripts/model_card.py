"""Write a shipped model's card from the model file and a fresh `mimika evaluate` run.

    python scripts/model_card.py seed --data ../shared/data/ckplus --split heldout

Every figure in the card comes from the model file (its training record) or from the
evaluation this script runs, so rerunning it reproduces the card.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from mimika.network.config import resolve_model_path
from mimika.network.model import Model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--title", default="")
    ap.add_argument("--notes", default="", help="a Markdown file whose text is added to the card")
    a = ap.parse_args()
    path = resolve_model_path(a.name, prefer=(".npz",))
    onnx_path = path.with_suffix(".onnx")
    model = Model.load(path)
    info = model.config.info
    eval_cmd = ["mimika", "evaluate", "--model", a.name, "--data", a.data, "--split", a.split]
    rep, table = evaluate(eval_cmd)
    onnx_config = None
    if onnx_path.exists():
        from mimika.network.predictor import OnnxModel
        onnx_config = OnnxModel(onnx_path).config
    int8 = onnx_config is not None and onnx_config.precision == "int8"
    float_path = path.with_suffix(".float.onnx")  # the exact float version shipped beside an INT8 file
    float_cmd = ["mimika", "evaluate", "--model", f"{a.name}.float", "--data", a.data, "--split", a.split]
    float_rep = evaluate(float_cmd)[0] if int8 else None
    hist = json.loads(path.with_suffix(".history.json").read_text()) if path.with_suffix(".history.json").exists() else []
    split = info.get("split", {})
    train_s = info.get("training", {}).get("seconds_this_session")
    lines = [
        f"# Model card: `{a.name}`" + (f" — {a.title}" if a.title else ""),
        "",
        f"- **Architecture:** `{model.config.arch}`, input {model.config.crop.width}x{model.config.crop.height} "
        f"grayscale, crop margin {model.config.crop.margin}",
        f"- **Labels:** {', '.join(model.labels)}",
        f"- **Data:** `{info.get('data')}`",
        f"- **Training command:** `{info.get('command')}`",
        f"- **Epochs:** {info.get('training', {}).get('epochs')}",
        f"- **Training wall time on the 2-core development machine:** {train_s} s",
        f"- **Files:** `{path.name}` ({path.stat().st_size / 1e6:.1f} MB, float16 weights, no pickle: training "
        f"and fine-tuning)" + (f", `{onnx_path.name}` ({onnx_path.stat().st_size / 1e6:.1f} MB, "
                               f"{'INT8' if int8 else 'float'}: prediction with ONNX Runtime"
                               + (f", calibrated on {onnx_config.info['onnx']['calibration']}" if int8 else
                                  f", written by `mimika export {path.name} {onnx_path.name}`") + ")"
                               if onnx_path.exists() else "")
        + (f", `{float_path.name}` ({float_path.stat().st_size / 1e6:.1f} MB: the same weights as float "
           f"ONNX, outputs equal to PyTorch's; `--model {a.name}.float`)" if float_path.exists() else ""),
        f"- **Test-time augmentation:** {model.config.tta or 'none'}",
    ]
    if model.config.temperature != 1.0:
        lines.append(f"- **Calibration:** temperature {model.config.temperature:g} in the config (the logits are "
                     f"divided by it), fitted on validation data by `mimika calibrate`; calibration error before "
                     f"and after, in and out of domain: `python scripts/cross_domain.py` (docs/cross-domain.md)")
    if model.config.class_prior:
        shares = ", ".join(f"{n} {v:.3f}" for n, v in zip(model.labels, model.config.class_prior))
        lines.append(f"- **Class prior:** answers assume the training shares ({shares}) unless asked for "
                     f"`--prior balanced`, which subtracts {model.config.balance:g} x log(share) from the logits "
                     f"(the balance with the best balanced accuracy on validation, fitted by `mimika calibrate`): "
                     f"every emotion equally likely, for posed faces and other cameras (docs/cross-domain.md)")
    if split.get("val", "").lower() == "publictest":
        lines.append("- **Split:** trained on Training; validated and selected on PublicTest; PrivateTest used only "
                     "for the metrics below")
    if split.get("val_subjects"):
        lines.append(f"- **Held-out subjects ({len(split['val_subjects'])}, never seen in training; chosen "
                     f"at random, seed {split['seed']}):** {', '.join(split['val_subjects'])}")
    if hist and hist[-1].get("val_accuracy") is not None:
        lines.append(f"- **Validation accuracy at the last epoch, as printed by training:** "
                     f"{hist[-1]['val_accuracy']:.4f}")
    if info.get("init"):
        lines.append(f"- **Initialized from:** {info['init']}")
    lines += ["", "## Metrics", ""]
    if int8:
        lines += ["| weights | n | accuracy | balanced accuracy | command |", "|---|---|---|---|---|",
                  f"| `{onnx_path.name}`, INT8 (what `mimika predict` and `evaluate` use) | {rep['n']} | "
                  f"{rep['accuracy']:.4f} | {rep['balanced_accuracy']:.4f} | `{' '.join(eval_cmd)}` |",
                  f"| `{float_path.name}`, float (= `{path.name}` through PyTorch) | {float_rep['n']} | {float_rep['accuracy']:.4f} | "
                  f"{float_rep['balanced_accuracy']:.4f} | `{' '.join(float_cmd)}` |"]
        if model.config.class_prior:
            balanced_cmd = eval_cmd + ["--prior", "balanced"]
            b = evaluate(balanced_cmd)[0]
            lines.append(f"| `{onnx_path.name}`, INT8, `--prior balanced` | {b['n']} | {b['accuracy']:.4f} | "
                         f"{b['balanced_accuracy']:.4f} | `{' '.join(balanced_cmd)}` |")
        lines += ["",
                  f"Per class, `{onnx_path.name}`:", ""]
    else:
        lines += [f"Reproduce: `{' '.join(eval_cmd)}`", "",
                  "| n | accuracy | balanced accuracy |", "|---|---|---|",
                  f"| {rep['n']} | {rep['accuracy']:.4f} | {rep['balanced_accuracy']:.4f} |", ""]
    lines += ["```", table.rstrip(), "```", ""]
    if a.notes:
        lines += [Path(a.notes).read_text().rstrip(), ""]
    lines.append(f"Card written by `python scripts/model_card.py {shlex.join(sys.argv[1:])}`.")
    out = path.with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def evaluate(cmd: list[str]) -> tuple[dict, str]:
    """The JSON report and the printed table of one `mimika evaluate` command."""
    run = lambda extra: subprocess.run([sys.executable, "-m", "mimika.cli", *cmd[1:], *extra],
                                       check=True, capture_output=True, text=True).stdout
    return json.loads(run(["--json"])), run([])


if __name__ == "__main__":
    main()
