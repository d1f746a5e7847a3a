"""Weight-space interpolation (WiSE-FT): the mix of a model and its fine-tuned copy, by hand."""

import numpy as np
import pytest
import torch

from mimika import interpolate
from mimika.cli import main
from mimika.common.errors import MimikaError
from mimika.network.model import Model


@pytest.fixture
def pair():
    start = Model.create("seed", seed=1)
    tuned = Model.create("seed", seed=2)
    tuned.config.temperature = 0.7  # a setting of the tuned model, kept by the mix
    return start, tuned


def test_each_weight_is_the_weighted_mean_and_the_tuned_config_is_kept(pair):
    start, tuned = pair
    mix = interpolate(start, tuned, 0.25)
    a, b, m = (x.net.state_dict() for x in (start, tuned, mix))
    for k in m:
        if m[k].is_floating_point():
            torch.testing.assert_close(m[k], 0.75 * a[k] + 0.25 * b[k])
    k = next(k for k in m if k.endswith("weight"))
    assert float(m[k].flatten()[0]) == pytest.approx(0.75 * float(a[k].flatten()[0]) + 0.25 * float(b[k].flatten()[0]))
    assert mix.config.temperature == 0.7
    crops = np.random.default_rng(0).integers(0, 256, (3, 96, 96), dtype=np.uint8)
    np.testing.assert_allclose(interpolate(start, tuned, 1.0).predict_proba(crops), tuned.predict_proba(crops), atol=1e-6)
    x = start.config.normalize(crops)
    np.testing.assert_allclose(interpolate(start, tuned, 0.0).logits(x), start.logits(x), atol=1e-5)


def test_models_that_do_not_mix_are_refused(pair):
    start, _ = pair
    with pytest.raises(MimikaError, match="differ in labels"):
        interpolate(start, Model.create("seed", labels=["happiness", "sadness"], seed=0), 0.5)
    with pytest.raises(MimikaError, match="between 0 and 1"):
        interpolate(start, start, 1.5)


def test_the_command_writes_the_mix(tmp_path, pair, capsys):
    start, tuned = pair
    start.save(tmp_path / "a.npz")
    tuned.save(tmp_path / "b.npz")
    assert main(["interpolate", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--weight", "0.5",
                 "--out", str(tmp_path / "m.npz")]) == 0
    mixed = Model.load(tmp_path / "m.npz").net.state_dict()
    k = next(iter(mixed))
    torch.testing.assert_close(mixed[k], 0.5 * start.net.state_dict()[k] + 0.5 * tuned.net.state_dict()[k])
    with pytest.raises(SystemExit) as e:
        main(["interpolate", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--weight", "2",
              "--out", str(tmp_path / "x.npz")])
    assert e.value.code == 2 and "out of range" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_a_network_that_pools_globally_mixes_across_input_sizes(tmp_path):
    """A model fine-tuned at another input size (--input-size) still mixes with its start; a network
    whose dense layer fits one size does not."""
    from dataclasses import replace

    from mimika.api import starting_model
    start = Model.create("vgg48", seed=1)
    start.save(tmp_path / "start.npz")
    tuned = starting_model(tmp_path / "start.npz", input_size=56)
    mix = interpolate(start, tuned, 0.5)
    assert (mix.config.crop.width, mix.config.crop.height) == (56, 56)
    crops = np.random.default_rng(0).integers(0, 256, (2, 56, 56), dtype=np.uint8)
    assert mix.predict_proba(crops).shape == (2, len(mix.config.labels))
    seed = Model.create("seed", seed=1)
    other = Model.create("seed", seed=2)
    other.config.crop = replace(other.config.crop, width=80, height=80)
    with pytest.raises(MimikaError, match="fit one size only"):
        interpolate(seed, other, 0.5)
