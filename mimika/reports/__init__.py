"""Reports over the wings: evaluation of a model on a face set, and figures (training curves,
confusion matrices, timelines)."""
