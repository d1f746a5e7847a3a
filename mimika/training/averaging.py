"""Weight-space interpolation of a fine-tuned model with the model it started from (WiSE-FT,
Wortsman et al., CVPR 2022): a fine-tuned network and its start lie in one basin, and the weights
between them often keep what the start knew while keeping much of what the fine-tuning learned,
at no cost at prediction time (one network, not an ensemble)."""

from __future__ import annotations

import copy

import torch

from ..common.errors import MimikaError
from ..network.architectures import get_architecture
from ..network.model import Model


def interpolate(start: Model, tuned: Model, weight: float) -> Model:
    """(1 - weight) * start + weight * tuned, parameter by parameter and for the normalisation
    layers' running statistics too; weight 1 is `tuned`, 0 its start. The config (labels, crop,
    calibration, training record) is the tuned model's, and the two must share architecture and
    labels; a network that pools globally may have been tuned at another input size (its weights
    take any), and the mix then reads the tuned model's."""
    if not 0.0 <= weight <= 1.0:
        raise MimikaError(f"the weight of the tuned model must be between 0 and 1, not {weight}")
    for field in ("arch", "labels"):
        if getattr(start.config, field) != getattr(tuned.config, field):
            raise MimikaError(f"the two models differ in {field} ({getattr(start.config, field)} against "
                              f"{getattr(tuned.config, field)}): only a model and its fine-tuned copy mix")
    sizes = [(m.config.crop.width, m.config.crop.height) for m in (start, tuned)]
    if sizes[0] != sizes[1] and not get_architecture(tuned.config.arch).any_input:
        raise MimikaError(f"the two models take faces of different sizes ({sizes[0]} against {sizes[1]}) and "
                          f"the {tuned.config.arch} network's weights fit one size only")
    a, b = start.net.state_dict(), tuned.net.state_dict()
    mixed = {k: (1 - weight) * a[k] + weight * v if v.is_floating_point() else v.clone() for k, v in b.items()}
    net = copy.deepcopy(tuned.net)
    with torch.no_grad():
        net.load_state_dict(mixed)
    return Model(copy.deepcopy(tuned.config), net)
