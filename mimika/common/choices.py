"""The choice lists that the command line, the API and the service all offer, each written once.
Plain tuples, importing nothing: the command line's parser reads them without loading NumPy."""

DEVICES = ("auto", "cpu", "cuda")  # where PyTorch trains and ONNX Runtime predicts

#: how a photo's faces are found: by the face detector, or the whole image taken as one face
#: (pre-cropped faces)
CROP_MODES = ("detect", "whole")
#: a labelled set's crop: one of `CROP_MODES`, or "auto", the layout's own default (detect on CK+
#: frames and photos, whole for pre-cropped sets)
DATASET_CROP_MODES = ("auto", *CROP_MODES)

#: test-time augmentations, as users name them (`ModelConfig.tta` stores "none" as ""): the face
#: alone, with its mirror image, or both also shifted a little (`config.tta_views`)
TTA_NAMES = ("none", "flip", "shift")

#: the class priors a model can answer under (`ModelConfig.prior`): "training", the classes as
#: common as in its training faces; "balanced", every class equally likely (`mimika calibrate`)
PRIORS = ("training", "balanced")

#: what a prediction may ask for, where "model" keeps what the model file says
MODEL_SETTING = "model"
TTA_CHOICES = (MODEL_SETTING, *TTA_NAMES)
PRIOR_CHOICES = (MODEL_SETTING, *PRIORS)

#: the machine-readable outputs of `mimika predict` (one list, a line per file, a row per face);
#: "table", for people, is what it prints when none is asked for
OUTPUT_FORMATS = ("json", "jsonl", "csv")
TABLE = "table"


def tta_mode(name: str) -> str:
    """A test-time augmentation's stored form (`ModelConfig.tta`) from its name: "none" is ""."""
    return "" if name == "none" else name
