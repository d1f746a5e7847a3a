"""Training options: each written once, with its help text. The command line derives its flags
from these fields (`cli.py`), and a checkpoint derives from them which options a resumed run must
keep (`fixed`). Imports no PyTorch, so `mimika --help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..common.choices import DEVICES as DEVICE_NAMES

SCHEDULE_NAMES = ("constant", "cosine")


def option(default, help: str, fixed: bool = True, low=None, high=None, low_open: bool = False, **cli):
    """A training option: its default, its help text, whether a resumed run must keep it (`fixed`),
    its valid range [low, high] (low excluded if `low_open`), and any extra argparse settings."""
    return field(default=default, metadata={"help": help, "fixed": fixed, "range": (low, high, low_open), "cli": cli})


@dataclass
class TrainOptions:
    epochs: int | None = option(None, "number of epochs (default: until the training loss settles)", fixed=False, low=1)
    max_epochs: int = option(100, "the bound when training until the loss settles", fixed=False, low=1)
    tol: float = option(1e-4, "settled when the training loss moves less than this between epochs", fixed=False, low=0)
    batch_size: int = option(32, "faces per minibatch", low=1)
    lr: float = option(0.01, "learning rate of SGD with Nesterov momentum", low=0, low_open=True)
    momentum: float = option(0.9, "Nesterov momentum", low=0, high=0.999)
    seed: int = option(0, "random seed: initial weights, shuffling, augmentation, subject choice")
    channels_last: bool = option(True, "channels-last memory layout (faster on CPU for every network measured)")
    bf16: bool | None = option(None, "mixed precision while training: bf16 autocast (float16 with loss scaling on "
                               "GPUs without bf16); default: on for CUDA and CPUs with native bf16 (AVX512-BF16, AMX), "
                               "elsewhere the architecture's measured choice")
    weight_decay: float = option(0.0, "L2 weight decay", low=0)
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy", low=0, high=0.99)
    schedule: str = option("constant", "learning-rate schedule (cosine needs --epochs)", choices=SCHEDULE_NAMES)
    warmup_epochs: int = option(0, "epochs of linear learning-rate warm-up", low=0)
    augment: bool = option(False, "random shifts, scales, rotations, flips and erasing of training faces")
    photometric: bool = option(False, "with --augment: random contrast, brightness, blur and sensor noise "
                               "of training faces (other cameras)")
    mixup: float = option(0.0, "alpha of mixup (Zhang et al. 2018): each training face blended with another of "
                          "its batch by a weight lambda ~ Beta(alpha, alpha), and their targets alike (e.g. 0.2). "
                          "0: off", low=0, high=10)
    soft_labels: bool = option(False, "train on the data's vote distributions (FER+, the Taiwanese corpus) where "
                               "it has them")
    source_balance: float = option(0.0, "with several --data sets: draw a set of n faces in proportion to "
                                   "n^(1-B) (0: faces as they come; 1: every set equally often); an epoch then "
                                   "draws as many faces as the sets hold, with replacement", low=0, high=1)
    class_balance: float = option(0.0, "draw each class of a set in proportion to its count^(1-C) (0: as the set "
                                  "holds them; 1: every class of a set equally often)", low=0, high=1)
    logit_adjust: float = option(0.0, "weight tau of a balanced loss for rare classes: tau x log(class share in "
                                 "the training set) is added to the logits while training (logit adjustment, Menon "
                                 "et al. 2021): the loss asks wider margins for rare classes, and prediction uses "
                                 "the plain logits. 0: plain cross-entropy", low=0, high=5)
    ema: float = option(0.0, "decay of an exponential moving average of the weights, updated after every step "
                        "(timm's model EMA, e.g. 0.999: an average over about 1/(1-decay) steps): validation "
                        "scores the average and the run saves it. 0: the last step's weights", low=0, high=0.99999)
    teacher: str = option("", "distil from trained models (model files, comma-separated, with the student's "
                          "input): the targets become (1 - w) x the labels + w x the teachers' average "
                          "probabilities on the same augmented faces (knowledge distillation, Hinton et al. 2015). "
                          "Classes are matched by name; a teacher lacking some of the student's classes moves a "
                          "face's label mass only among the classes it knows",
                          metavar="MODEL[,MODEL...]")
    teacher_weight: float = option(0.5, "the weight w of the teachers' probabilities in the targets "
                                   "(with --teacher)", low=0, high=1)
    teacher_sets: str = option("", "with --teacher and several --data sets: only the faces of these sets "
                               "(comma-separated names: ferplus, ckplus, expw, taiwanese, a folder's name) get the "
                               "teachers' answers, e.g. the set the starting model learned, so it is not forgotten "
                               "while the others are learned from their labels alone. Default: every face",
                               metavar="SET[,SET...]")
    keep_best: bool = option(False, "end with the weights of the epoch with the best validation accuracy",
                             fixed=False)
    device: str = option("auto", "where to train: cuda (this process's GPU), cpu, or auto (cuda when PyTorch "
                         "sees a GPU); model files are the same either way", fixed=False, choices=DEVICE_NAMES)
    half: bool = option(False, "store the weights as float16 (half the size); validation scores the "
                        "float16 weights, so its figure is the saved model's")


def fixed_options() -> list[str]:
    """The options a resumed run must share with the checkpoint it continues."""
    return [f.name for f in fields(TrainOptions) if f.metadata["fixed"]]
