#!/usr/bin/env bash
# Retrain a shipped model from ../shared/data with the exact commands that made it (the FER models trained
# in float32, the default before mimika chose bf16 on CPUs with native bf16: hence --no-bf16):
#   bash scripts/retrain.sh seed|ferplus|fer2013      (ferplus about 65 min here, fer2013 needs ferplus)
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data; M=mimika/models
calibrated() {  # $1 name, $2 data: fit temperature and balance on the INT8 file (PublicTest), copy them to the float files
  mimika calibrate $M/$1.onnx --data $2
  mimika configure $M/$1.npz --fitted-from $M/$1.onnx
  mimika export $M/$1.npz $M/$1.float.onnx
}
case "${1:-}" in
  seed)
    mimika train --data $D/ckplus --val-subjects 0.2 --seed 0 --half --out $M/seed.npz
    mimika export $M/seed.npz $M/seed.onnx ;;
  ferplus)
    mimika train --data $D/fer2013/fer2013new.csv --arch vgg48 --epochs 40 --batch-size 64 --lr 0.05 --schedule cosine \
      --warmup-epochs 1 --weight-decay 5e-4 --augment --soft-labels --keep-best --half --no-bf16 \
      --out runs/ferplus/ferplus.npz --checkpoint runs/ferplus/ferplus.ckpt.npz
    cp runs/ferplus/ferplus.npz runs/ferplus/ferplus.history.json runs/ferplus/ferplus.history.png $M/
    mimika configure $M/ferplus.npz --tta flip
    mimika export $M/ferplus.npz $M/ferplus.onnx --int8 --calibration $D/fer2013/fer2013new.csv
    calibrated ferplus $D/fer2013/fer2013new.csv ;;
  fer2013)
    mimika train --data $D/fer2013/fer2013.csv.gz --init $M/ferplus.npz --epochs 6 --batch-size 64 --lr 0.01 \
      --schedule cosine --augment --weight-decay 5e-4 --keep-best --half --no-bf16 --out runs/fer2013/fer2013.npz \
      --checkpoint runs/fer2013/fer2013.ckpt.npz
    mimika train --data $D/fer2013/fer2013.csv.gz --init runs/fer2013/fer2013.npz --epochs 10 --batch-size 64 --lr 0.005 \
      --schedule cosine --augment --weight-decay 5e-4 --keep-best --half --no-bf16 --out runs/fer2013b/fer2013.npz \
      --checkpoint runs/fer2013b/fer2013.ckpt.npz
    cp runs/fer2013b/fer2013.npz runs/fer2013b/fer2013.history.json runs/fer2013b/fer2013.history.png $M/
    mimika configure $M/fer2013.npz --tta flip
    mimika export $M/fer2013.npz $M/fer2013.onnx --int8 --calibration $D/fer2013/fer2013.csv.gz
    calibrated fer2013 $D/fer2013/fer2013.csv.gz ;;
  *) echo "usage: bash scripts/retrain.sh seed|ferplus|fer2013" >&2; exit 2 ;;
esac
