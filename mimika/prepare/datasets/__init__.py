"""Input preparation for training: labelled face sets from the layouts users have.

    faceset.py   FaceSet (faces, labels, subjects, splits) - imports no loader
    prepare.py   shared preparation: read, find the one face, crop, resize
    protocols.py train / validation / test protocols (dataset splits, held-out subjects)
    fer2013.py   FER2013 and FER+ CSVs;  ckplus.py  the CK+ release layout;  folders.py  class folders
    registry.py  load_dataset: the table of layouts (probe, loader, default crop)
    cache.py     prepared faces cached on disk
"""

from .ckplus import load_ckplus
from .faceset import FaceSet, held_out_subjects, joined
from .folders import faces_from_arrays, load_class_folders
from .protocols import Split, evaluation_set, joint_split, train_val_split, training_faces
from .registry import LAYOUTS, load_dataset

__all__ = ["FaceSet", "LAYOUTS", "Split", "evaluation_set", "faces_from_arrays", "held_out_subjects",
           "joined", "joint_split", "load_ckplus", "load_class_folders", "load_dataset", "train_val_split", "training_faces"]
