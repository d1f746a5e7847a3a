"""The accuracy table of docs/accuracy.md: every shipped model evaluated on its benchmark's test split,
plus the cross-validation reports in reports/.

    python scripts/accuracy_table.py [--data ../shared/data]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mimika.network.config import shipped_models

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS = {  # model: (benchmark, data under --data, split)
    "ferplus": ("FER+ PrivateTest, majority labels, 8 classes", "fer2013/fer2013new.csv", "PrivateTest"),
    "fer2013": ("FER2013 PrivateTest, 7 classes", "fer2013/fer2013.csv.gz", "PrivateTest"),
    "seed": ("CK+ (this subset), 24 held-out subjects, 7 classes", "ckplus", "heldout"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    a = ap.parse_args()
    print("| model | benchmark | n | accuracy | balanced accuracy | command |")
    print("|---|---|---|---|---|---|")
    for name, (bench, data, split) in BENCHMARKS.items():
        if name not in shipped_models():
            continue
        args = ["evaluate", "--model", name, "--data", f"{a.data}/{data}", "--split", split]
        rep = json.loads(subprocess.run([sys.executable, "-m", "mimika.cli", *args, "--json"], check=True,
                                        capture_output=True, text=True).stdout)
        shown = " ".join(["mimika", *args]).replace(a.data, "../shared/data")
        print(f"| `{name}` | {bench} | {rep['n']} | {rep['accuracy']:.4f} | {rep['balanced_accuracy']:.4f} "
              f"| `{shown}` |")
    for report in sorted((ROOT / "reports").glob("*/crossval.json")):
        s = json.loads(report.read_text())
        meta = json.loads((report.parent / "command.json").read_text()) if (report.parent / "command.json").exists() \
            else {}
        print(f"| {meta.get('model', '')} | {meta.get('benchmark', report.parent.name)}: {s['k']}-fold "
              f"subject-independent, mean of folds (std {s['accuracy_std']:.4f}) | {s['pooled']['n']} | "
              f"{s['accuracy_mean']:.4f} | {s['pooled']['balanced_accuracy']:.4f} (pooled) | "
              f"`{meta.get('command', '')}` |")


if __name__ == "__main__":
    main()
