#!/usr/bin/env bash
# GPU check (docs/scale.md), a few minutes on a machine with one NVIDIA GPU:
#   1. train `seed` 3 epochs with --device cuda, and the same under torchrun (NCCL, DDP), and on the CPU;
#   2. evaluate the CUDA-trained model on the GPU and on the CPU (same figures expected);
#   3. export it and check the ONNX file on CUDA (ONNX Runtime's CUDA provider vs PyTorch on the GPU);
#   4. predict photos through the CUDA provider and through the CPU one: the largest probability difference.
# Needs a Python with torch (CUDA build) and mimika's train extra; onnxruntime-gpu for steps 3-4 on CUDA.
#     bash scripts/gpu_check.sh            PYTHON=/path/to/python bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
step() { echo; echo "== $*"; }
run() { echo "\$ $*"; "$@" || echo "!! failed (exit $?): $*"; }

step "versions"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
$PY -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'gpu', torch.cuda.is_available() and torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported());
print('onnxruntime', o.__version__, o.get_available_providers())"
run $PY -m mimika models --verbose

step "data: 1024 faces from the bundled photo"
$PY bench/scale.py --make-data "$T/faces" --faces 1024
COMMON=(--data "$T/faces" --crop whole --epochs 3 --batch-size 64 --val-subjects 0.25)

step "1. training, seed, 3 epochs, batch 64 (epoch lines give seconds: images/s = 768 / seconds)"
run $PY -m mimika train "${COMMON[@]}" --device cuda --out "$T/cuda.npz"
run $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m mimika train "${COMMON[@]}" --device cuda \
    --out "$T/ddp.npz" --checkpoint "$T/ddp.ckpt.npz"
run $PY -m mimika train "${COMMON[@]}" --device cpu --out "$T/cpu.npz"

step "2. the CUDA-trained model evaluated on the GPU and on the CPU"
run $PY -m mimika evaluate --model "$T/cuda.npz" --data "$T/faces" --crop whole --split heldout --device cuda
run $PY -m mimika evaluate --model "$T/cuda.npz" --data "$T/faces" --crop whole --split heldout --device cpu

step "3. export checks: ONNX Runtime against PyTorch, on each device"
run $PY -m mimika export "$T/cuda.npz" "$T/cuda.onnx" --float32 --device cuda
run $PY -m mimika export "$T/cuda.npz" "$T/cpu.onnx" --float32 --device cpu

step "4. prediction through the CUDA provider vs the CPU provider (shipped models, 64 photos)"
$PY - "$T" <<'EOF'
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "bench")
from scale import make_photos
from mimika.network.config import shipped_models
from mimika.recognition import Recognizer, expand_inputs
from mimika.network.predictor import load_predictor
photos = expand_inputs([make_photos(Path(sys.argv[1]) / "photos", 64)])
for name in sorted(shipped_models()):
    out = {}
    for device in ("cpu", "cuda"):
        try:
            rec = Recognizer(load_predictor(name, device=device))
        except Exception as e:
            print(f"{name}: {device}: {e}")
            break
        t = time.perf_counter()
        res = list(rec.predict(photos))
        out[device] = (rec.model.provider, time.perf_counter() - t,
                       [f.box for r in res for f in r.faces],
                       np.array([[f.scores[k] for k in rec.model.labels] for r in res for f in r.faces]))
    if len(out) == 2:
        (pc, tc, bc, sc), (pg, tg, bg, sg) = out["cpu"], out["cuda"]
        same = bc == bg
        diff = float(np.abs(sc - sg).max()) if same and len(sc) else float("nan")
        print(f"{name}: {pg} vs {pc}: same boxes {same}, {len(bc)} faces, largest probability difference "
              f"{diff:.2e}; {len(photos) / tg:.0f} vs {len(photos) / tc:.0f} photos/s (detection on the CPU)")
EOF
echo
echo "done"
