"""Input preparation for training: labelled face sets from the layouts users have."""

from .base import FaceSet, load_dataset
from .ckplus import load_ckplus
from .folders import load_class_folders, faces_from_arrays

__all__ = ["FaceSet", "load_dataset", "load_ckplus", "load_class_folders", "faces_from_arrays"]
