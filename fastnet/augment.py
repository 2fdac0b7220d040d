"""Data augmentation for the training loop: random shifts and mirror images, drawn afresh each epoch.

``train(..., shift=2)`` trains each epoch on a copy of the training images in which every image is
moved by a random whole number of pixels (up to ``shift`` in each direction, the vacated border
filled with zeros); ``flip=True`` also mirrors a random half of them left to right (for clothes,
not for digits). The copies are made with numpy from the images as the steps read them (uint8
codes or floats), from their own random stream: the batches drawn are those of a run without
augmentation, and the same seed gives the same run.
"""

import numpy as np


def check_augmentation(shift, flip, image_shape):
    """A ValueError naming the problem, unless (shift, flip) can augment images of ``image_shape``."""
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift must be a whole number of pixels >= 0, got {shift!r}")
    if not isinstance(flip, (bool, np.bool_)):
        raise ValueError(f"flip must be True or False, got {flip!r}")
    if (shift or flip) and image_shape is None:
        raise ValueError("shift and flip move pixels of images: this network takes flat rows (use a convnet)")
    if image_shape is not None and shift >= min(image_shape[1:]):
        raise ValueError(f"shift {shift} must be smaller than the {image_shape[1]}×{image_shape[2]} images")


def augmented(rows, image_shape, rng, shift=0, flip=False):
    """A copy of ``rows`` (N, C·H·W) with each image moved by (dy, dx), each drawn uniformly from
    [−shift, shift], zeros filling in, and with ``flip`` mirrored left to right with probability 1/2."""
    n = rows.shape[0]
    c, h, w = image_shape
    images = rows.reshape(n, c, h, w)
    out = np.zeros_like(images)
    dy, dx = rng.integers(-shift, shift + 1, n), rng.integers(-shift, shift + 1, n)
    for sy in range(-shift, shift + 1):
        for sx in range(-shift, shift + 1):
            picked = np.flatnonzero((dy == sy) & (dx == sx))
            # output pixel (y, x) takes input (y - sy, x - sx) where that lies inside the image
            out[picked, :, max(sy, 0) : h + min(sy, 0), max(sx, 0) : w + min(sx, 0)] = images[
                picked, :, max(-sy, 0) : h + min(-sy, 0), max(-sx, 0) : w + min(-sx, 0)
            ]
    if flip:
        mirrored = np.flatnonzero(rng.random(n) < 0.5)
        out[mirrored] = out[mirrored, :, :, ::-1]
    return out.reshape(n, c * h * w)
