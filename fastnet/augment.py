"""Data augmentation for the training loop: random shifts, turns, zooms and mirror images, drawn
afresh each epoch.

``train(..., shift=2)`` trains each epoch on a copy of the training images in which every image is
moved by a random whole number of pixels (up to ``shift`` in each direction, the vacated border
filled with zeros); ``rotate=10`` also turns each image about its centre by an angle drawn from
[−10°, 10°] and ``zoom=0.1`` scales it by a factor drawn from [0.9, 1.1] (bilinear interpolation,
zeros outside the image); ``flip=True`` mirrors a random half of them left to right (for clothes,
not for digits). The copies are made from the images as the steps read them (uint8 codes, rounded
back to codes after a turn or zoom, or floats), from their own random stream: the batches drawn are
those of a run without augmentation, and the same seed gives the same run.
"""

import math

import numpy as np
from numba import njit, prange


def check_augmentation(shift, flip, image_shape, rotate=0, zoom=0):
    """A ValueError naming the problem, unless (shift, flip, rotate, zoom) can augment images of
    ``image_shape``."""
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift must be a whole number of pixels >= 0, got {shift!r}")
    if not isinstance(flip, (bool, np.bool_)):
        raise ValueError(f"flip must be True or False, got {flip!r}")
    for name, value, high in (("rotate", rotate, 180), ("zoom", zoom, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0 <= value < high:
            raise ValueError(f"{name} must be in [0, {high}), got {value!r}")
    if (shift or flip or rotate or zoom) and image_shape is None:
        raise ValueError("shift, flip, rotate and zoom move pixels of images: this network takes flat rows "
                         "(use a convnet)")  # fmt: skip
    if image_shape is not None and shift >= min(image_shape[1:]):
        raise ValueError(f"shift {shift} must be smaller than the {image_shape[1]}×{image_shape[2]} images")


def augmented(rows, image_shape, rng, shift=0, flip=False, rotate=0, zoom=0):
    """A copy of ``rows`` (N, C·H·W) with each image moved by (dy, dx), each drawn uniformly from
    [−shift, shift], zeros filling in, with ``flip`` mirrored left to right with probability 1/2,
    then turned by an angle drawn from [−rotate°, rotate°] and scaled by a factor drawn from
    [1 − zoom, 1 + zoom] about its centre."""
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
    if rotate or zoom:  # drawn after the shifts and flips, so runs without them draw as before
        angle = np.deg2rad(rng.uniform(-rotate, rotate, n))
        scale = rng.uniform(1 - zoom, 1 + zoom, n)
        turned = np.empty_like(out)
        _warp(out, turned, np.cos(angle) / scale, np.sin(angle) / scale, np.issubdtype(out.dtype, np.integer))
        out = turned
    return out.reshape(n, c * h * w)


@njit(parallel=True, cache=True)
def _warp(images, out, cos_, sin_, round_):
    """out[i] = images[i] turned and scaled about its centre: each output pixel reads the input
    at the point the inverse map [[cos_, sin_], [−sin_, cos_]] sends it to (cos_ = cos θ / s),
    bilinearly between the four pixels around it, pixels outside the image counting as zeros."""
    n, c, h, w = images.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for i in prange(n):
        a, b = cos_[i], sin_[i]
        for y in range(h):
            for x in range(w):
                sx = a * (x - cx) + b * (y - cy) + cx
                sy = -b * (x - cx) + a * (y - cy) + cy
                x0, y0 = math.floor(sx), math.floor(sy)
                fx, fy = sx - x0, sy - y0
                for ch in range(c):
                    v = 0.0
                    for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                            if 0 <= yy < h and 0 <= xx < w:
                                v += wy * wx * images[i, ch, yy, xx]
                    out[i, ch, y, x] = math.floor(v + 0.5) if round_ else v
