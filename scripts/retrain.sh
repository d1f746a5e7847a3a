#!/usr/bin/env bash
# Retrain a shipped model from ../shared/data with the exact commands that made it (ferplus trained in
# float32, the default before mimika chose bf16 on CPUs with native bf16: hence its --no-bf16):
#   bash scripts/retrain.sh seed|ferplus|fer2013|multisource   (ferplus about 65 min here, fer2013 about 2 h,
#   multisource about 15 min from the shipped ferplus)
# and the same shipped-file steps for a candidate of experiments/experiments.md, in a scratch folder:
#   bash scripts/retrain.sh ship NAME RUN.npz DATA OUTDIR [MORE...]
# (MORE: further calibrate flags for a model trained on several sets, e.g. --data SET ... --detector cnn:
# the temperature and balance are then fitted on the validation parts of all of them; INT8 ranges on DATA)
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data; M=mimika/models
shipped() {  # $1 name, $2 trained .npz, $3 data, then more calibrate flags: flip, INT8 export, temperature and
  # balance fitted on the validation faces
  cp $2 $M/$1.npz
  for f in history.json history.png; do [ ! -f ${2%.npz}.$f ] || cp ${2%.npz}.$f $M/$1.$f; done
  mimika configure $M/$1.npz --tta flip
  mimika export $M/$1.npz $M/$1.onnx --int8 --calibration $3
  mimika calibrate $M/$1.onnx --data $3 "${@:4}"  # fitted on the INT8 file, copied to the float files
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
    shipped ferplus runs/ferplus/ferplus.npz $D/fer2013/fer2013new.csv ;;
  fer2013)  # the wider network on FER+ (experiment E8), then two runs on the FER2013 labels (E13), in bf16
    mimika train --data $D/fer2013/fer2013new.csv --arch vgg48w --bf16 --epochs 40 --batch-size 64 --lr 0.05 \
      --schedule cosine --warmup-epochs 1 --weight-decay 5e-4 --augment --soft-labels --keep-best --half \
      --out runs/e8-wide/model.npz --checkpoint runs/e8-wide/ckpt.npz
    mimika train --data $D/fer2013/fer2013.csv.gz --init runs/e8-wide/model.npz --epochs 6 --batch-size 64 --lr 0.01 \
      --schedule cosine --augment --weight-decay 5e-4 --keep-best --half --bf16 --out runs/e13-fer2013-wide/stage1.npz \
      --checkpoint runs/e13-fer2013-wide/stage1.ckpt.npz
    mimika train --data $D/fer2013/fer2013.csv.gz --init runs/e13-fer2013-wide/stage1.npz --epochs 10 --batch-size 64 \
      --lr 0.005 --schedule cosine --augment --weight-decay 5e-4 --keep-best --half --bf16 \
      --out runs/e13-fer2013-wide/model.npz --checkpoint runs/e13-fer2013-wide/stage2.ckpt.npz
    shipped fer2013 runs/e13-fer2013-wide/model.npz $D/fer2013/fer2013.csv.gz ;;
  multisource)  # ferplus trained on beside CK+, ExpW and the Taiwanese corpus (experiments E32), then its weights
    # mixed 0.4 / 0.6 with ferplus' (E37); the temperature and balance fitted on all four validation parts
    mimika train --data $D/fer2013/fer2013new.csv --data $D/ckplus --with-neutral --data $D/expw --data $D/taiwanese \
      --detector cnn --init $M/ferplus.npz --epochs 8 --batch-size 64 --lr 0.005 --schedule cosine --weight-decay 5e-4 \
      --augment --soft-labels --source-balance 0.5 --class-balance 0.5 --keep-best --half --bf16 \
      --out runs/multisource/tuned.npz --checkpoint runs/multisource/ckpt.npz
    mimika interpolate $M/ferplus.npz runs/multisource/tuned.npz --weight 0.6 --out runs/multisource/model.npz
    for f in history.json history.png; do cp runs/multisource/tuned.$f runs/multisource/model.$f; done
    shipped multisource runs/multisource/model.npz $D/fer2013/fer2013new.csv --data $D/ckplus --data $D/expw \
      --data $D/taiwanese --detector cnn --with-neutral ;;
  ship)
    [ $# -ge 5 ] || { echo "usage: bash scripts/retrain.sh ship NAME RUN.npz DATA OUTDIR [MORE...]" >&2; exit 2; }
    M=$5; mkdir -p $M
    shipped $2 $3 $4 "${@:6}" ;;
  *) echo "usage: bash scripts/retrain.sh seed|ferplus|fer2013|multisource | ship NAME RUN.npz DATA OUTDIR" >&2; exit 2 ;;
esac
