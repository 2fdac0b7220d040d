"""Data augmentation (fastnet.augment): each image moved by a drawn shift and mirrored, never
altered otherwise; turned and zoomed as SciPy's affine_transform does it; the training loop and
the train command with --shift, --flip, --rotate, --zoom and --hidden."""

import json

import numpy as np
import pytest
from scipy import ndimage
from test_cli import SUBSET

from fastnet import SimpleConvNet, TwoLayerNet
from fastnet.augment import augmented, check_augmentation
from fastnet.cli import main
from fastnet.train import train


def moved(image, dy, dx):
    """The definition: pixel (y, x) of the result is image (y − dy, x − dx), zero outside."""
    c, h, w = image.shape
    out = np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[:, y, x] = image[:, y - dy, x - dx]
    return out


@pytest.mark.parametrize("shape,shift,flip", [((1, 7, 9), 2, False), ((3, 5, 5), 1, True), ((1, 6, 6), 0, True)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_every_image_is_moved_and_mirrored_within_the_bounds(shape, shift, flip, dtype):
    rng = np.random.default_rng(0)
    rows = (rng.integers(1, 255, (300, int(np.prod(shape))))).astype(dtype)  # no zeros: a move shows
    out = augmented(rows, shape, np.random.default_rng(1), shift, flip)
    assert out.dtype == rows.dtype and out.shape == rows.shape
    seen, mirrored = set(), 0
    for row, new in zip(rows, out):
        image, new = row.reshape(shape), new.reshape(shape)
        matches = [(dy, dx, m) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                   for m in ([False, True] if flip else [False])
                   if np.array_equal(moved(image[:, :, ::-1] if m else image, dy, dx), new)]  # fmt: skip
        assert matches, "an image that is no move of its original"
        seen.add(matches[0][:2])
        mirrored += matches[0][2]
    assert len(seen) == (2 * shift + 1) ** 2  # every shift drawn
    assert (40 < mirrored < 260) if flip else mirrored == 0
    again = augmented(rows, shape, np.random.default_rng(1), shift, flip)
    assert np.array_equal(out, again)  # the same stream, the same copy
    assert np.array_equal(augmented(rows, shape, rng, 0, False), rows)


def turned(image, angle, scale):
    """The reference: ``image`` (C, H, W) turned by ``angle`` degrees and scaled by ``scale`` about its
    centre, bilinear, zeros outside (SciPy maps each output pixel to the input point it reads)."""
    c, h, w = image.shape
    cos, sin = np.cos(np.deg2rad(angle)) / scale, np.sin(np.deg2rad(angle)) / scale
    matrix = np.array([[cos, -sin], [sin, cos]])  # (row, column) read for output (y, x)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    return np.stack([ndimage.affine_transform(plane.astype(np.float64), matrix, offset=centre - matrix @ centre,
                                              order=1, mode="grid-constant", cval=0) for plane in image])  # fmt: skip


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 5, 8), (2, 1, 7)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_turns_and_zooms_are_scipys_affine_transform(shape, dtype):
    rows = np.random.default_rng(0).integers(0, 256, (40, int(np.prod(shape)))).astype(dtype)
    rotate, zoom = 25.0, 0.2
    out = augmented(rows, shape, np.random.default_rng(3), rotate=rotate, zoom=zoom)
    assert out.dtype == rows.dtype and out.shape == rows.shape
    draws = np.random.default_rng(3)  # the same stream: angles, then scales
    angles, scales = draws.uniform(-rotate, rotate, 40), draws.uniform(1 - zoom, 1 + zoom, 40)
    assert angles.min() < -10 and angles.max() > 10 and scales.min() < 0.9 and scales.max() > 1.1
    for row, new, angle, scale in zip(rows, out, angles, scales):
        expected = turned(row.reshape(shape), angle, scale).ravel()
        if np.issubdtype(dtype, np.integer):  # codes: rounded to the nearest code
            assert np.abs(new.astype(np.float64) - expected).max() <= 0.5 + 1e-9
        else:
            np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-3 if dtype == np.float32 else 1e-9)
    assert np.array_equal(out, augmented(rows, shape, np.random.default_rng(3), rotate=rotate, zoom=zoom))


def test_a_turn_after_a_shift_keeps_the_shifts_draws():
    rows = np.random.default_rng(0).integers(0, 256, (50, 100)).astype(np.uint8)
    shifted = augmented(rows, (1, 10, 10), np.random.default_rng(1), 2, True)
    both = augmented(rows, (1, 10, 10), np.random.default_rng(1), 2, True, rotate=5)
    assert not np.array_equal(shifted, both)
    tiny = augmented(rows, (1, 10, 10), np.random.default_rng(1), 2, True, rotate=1e-9)
    assert np.array_equal(shifted, tiny)  # the same shifts and flips, then a turn by (almost) nothing


def test_bad_augmentation_is_refused():
    with pytest.raises(ValueError, match="whole number of pixels"):
        check_augmentation(-1, False, (1, 28, 28))
    with pytest.raises(ValueError, match="True or False"):
        check_augmentation(1, "yes", (1, 28, 28))
    with pytest.raises(ValueError, match="smaller than the 5×5 images"):
        check_augmentation(5, False, (1, 5, 5))
    for bad in ({"rotate": -1}, {"rotate": 180}, {"zoom": 1}, {"zoom": float("nan")}, {"rotate": "10"}):
        with pytest.raises(ValueError, match="rotate|zoom"):
            check_augmentation(0, False, (1, 28, 28), **bad)
    x, t = np.random.default_rng(0).random((20, 784)), np.zeros(20, np.int64)
    with pytest.raises(ValueError, match="takes flat rows"):
        train(TwoLayerNet(784, 5, 10, seed=0), (x, t), (x, t), iters=1, shift=1)
    with pytest.raises(ValueError, match="takes flat rows"):
        train(TwoLayerNet(784, 5, 10, seed=0), (x, t), (x, t), iters=1, zoom=0.1)


def test_training_with_shifts_draws_the_same_batches_and_repeats():
    rng = np.random.default_rng(0)
    x, t = rng.integers(0, 256, (60, 1, 12, 12)).astype(np.float32) / 255, rng.integers(0, 3, 60)
    cp = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}

    def run(**augment):
        net = SimpleConvNet((1, 12, 12), cp, 8, 3, seed=1)
        history = train(net, (x, t), (x, t), iters=12, batch_size=10, lr=0.1, seed=4, log=lambda s: None, **augment)
        return net, history

    plain, shifted, again = run(), run(shift=2), run(shift=2)
    assert shifted[1].config["shift"] == 2 and plain[1].config["shift"] == 0
    assert all(np.array_equal(shifted[0].params[k], again[0].params[k]) for k in plain[0].params)
    assert not np.array_equal(plain[0].params["W1"], shifted[0].params["W1"])
    turned_once, turned_again = run(rotate=10, zoom=0.1), run(rotate=10, zoom=0.1)
    assert turned_once[1].config["rotate"] == 10 and turned_once[1].config["zoom"] == 0.1
    assert all(np.array_equal(turned_once[0].params[k], turned_again[0].params[k]) for k in plain[0].params)
    assert not np.array_equal(plain[0].params["W1"], turned_once[0].params["W1"])


def test_the_train_command_takes_shift_flip_and_a_convnets_hidden_size(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--net", "simple-conv", "--hidden", "20", "--shift", "2", "--flip", "--rotate", "8",
                 "--zoom", "0.05", "--dataset", SUBSET, "--epochs", "1", "--out", str(out), "--no-plot",
                 "--no-progress", "--seed", "0"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    config = json.loads((out / "history.json").read_text())["config"]
    assert config["shift"] == 2 and config["flip"] is True and "20" in config["layers"]
    assert config["rotate"] == 8 and config["zoom"] == 0.05
    assert main(["train", "--shift", "2", "--dataset", SUBSET, "--iters", "1", "--out", str(out)]) == 1
    assert "takes flat rows" in capsys.readouterr().err
