"""WindowData: windows (boxes) cut out of images and warped to a fixed size, as R-CNN trains.

The window file (window_data_param.source) repeats, once per image:

    # image_index
    image_path
    channels
    height
    width
    num_windows
    class_index overlap x1 y1 x2 y2        (num_windows lines; inclusive pixel corners)

image_index counts 0, 1, 2, ...; image paths are root_folder + image_path.
"""

import math
import os
from functools import partial

import numpy as np

from .. import rng
from ..data.convert import load_image
from ..data.prefetch import BatchPrefetcher
from ..data.transformer import DataTransformer
from ..errors import ConfnetError
from .prefetching import PrefetchingLayer
from .registry import register_layer

_IMAGE, _LABEL, _X1, _Y1, _X2, _Y2 = range(6)  # columns of a window row


@register_layer("WindowData")
class WindowData(PrefetchingLayer):
    """A batch of batch_size windows drawn at random (with replacement), as Caffe does:

    - windows with overlap >= fg_threshold are foreground (their class_index must be > 0);
      those with overlap < bg_threshold are background, with label 0; the rest are unused;
    - a batch holds num_fg = int(batch_size * fg_fraction) foreground windows after
      batch_size - num_fg background ones;
    - each window is cut out, with context_pad pixels of context on each side of the
      crop_size x crop_size output (crop_mode "square" first makes the box square), clipped to
      the image, resized bilinearly and, with transform_param.mirror, flipped at random. The
      part of the output that fell outside the image stays 0. Then, for the pixels of the cut:

        top[0][n, c, h, w] = (pixel - mean[c, h + off, w + off]) * window_data_param.scale

      with mean the centre crop_size crop of transform_param.mean_file (off = (mean width -
      crop_size) / 2, not mirrored), one mean_value per channel, or 0.

    top[0]: (batch_size, 3, crop_size, crop_size), images read in BGR colour.
    top[1]: (batch_size,) labels.   No backward. Windows are drawn in every phase.
    """

    params = ("window_data_param", "transform_param")
    num_top = 2

    def layer_setup(self, bottom, top):
        p, t = self.param.window_data_param, self.param.transform_param
        self._check_param(p, t)
        means = self.call(lambda: DataTransformer(t, self.phase))  # mean_file / mean_value
        paths, windows = _read_window_file(p.source, p.root_folder, self.fail)
        fg, bg = _split_windows(windows, p.fg_threshold, p.bg_threshold)
        self.require((fg[:, _LABEL] > 0).all(),
                     f"window file '{p.source}': a foreground window (overlap >= fg_threshold) "
                     "has class_index <= 0, but 0 is the background class")
        num_fg = int(np.float32(p.batch_size) * np.float32(p.fg_fraction))
        for name, count, have in (("foreground", num_fg, fg),
                                  ("background", p.batch_size - num_fg, bg)):
            self.require(count == 0 or len(have), f"a batch needs {count} {name} window(s), but "
                                                  f"window file '{p.source}' has none")
        layer_rng = rng.derive()
        sampler = _WindowSampler(p.source, bg, fg, num_fg, t.mirror, layer_rng)
        cache = [self.call(partial(_read_color, path)) for path in paths] \
            if p.cache_images else None
        mean = _mean_crop(means, t.crop_size, self.fail)
        warp = partial(_warp_window, paths=paths, cache=cache, crop_size=t.crop_size,
                       context_pad=p.context_pad, square=p.crop_mode == "square",
                       mean=mean, scale=np.float32(p.scale))
        # The windows are cut and normalised by `warp`; the prefetcher's transformer only keeps
        # the random state (the sampler draws from the same generator).
        self.start_prefetch(BatchPrefetcher(sampler, p.batch_size, decode_fn=warp,
                                            transformer=DataTransformer(None, self.phase,
                                                                        layer_rng)), top)

    def _check_param(self, p, t):
        self.require(p.batch_size > 0, "window_data_param.batch_size must be positive")
        self.require(p.source, "window_data_param.source (the window file) is not set")
        self.require(os.path.isfile(p.source), f"window file '{p.source}' not found")
        self.require(t.crop_size > 0, "transform_param.crop_size (the window size) must be set")
        self.require(not (p.HasField("mean_file") or p.HasField("crop_size")
                          or p.HasField("mirror")),
                     "window_data_param's old mean_file, crop_size and mirror belong in "
                     "transform_param")
        self.require(not t.HasField("scale"),
                     "WindowData scales by window_data_param.scale, as Caffe does; move "
                     "transform_param.scale there")
        self.require(not (t.force_color or t.force_gray),
                     "transform_param.force_color/force_gray do not apply: WindowData reads "
                     "images in colour")
        self.require(p.crop_mode in ("warp", "square"),
                     f"crop_mode must be \"warp\" or \"square\", got \"{p.crop_mode}\"")
        self.require(2 * p.context_pad < t.crop_size,
                     f"context_pad {p.context_pad} leaves nothing of a {t.crop_size} crop")



class _WindowSampler:
    """Reader for BatchPrefetcher: each batch is batch_size - num_fg background windows, then
    num_fg foreground ones, drawn uniformly with replacement, each with a mirror flag."""

    def __init__(self, path, background, foreground, num_fg, mirror, generator):
        self.path = path
        self.background, self.foreground = background, foreground
        self.num_fg, self.mirror, self.rng = num_fg, mirror, generator
        self.position = 0

    def read_batch(self, n):
        bg = self.background[self.rng.integers(len(self.background), size=n - self.num_fg)] \
            if n > self.num_fg else self.background[:0]
        fg = self.foreground[self.rng.integers(len(self.foreground), size=self.num_fg)] \
            if self.num_fg else self.foreground[:0]
        flips = self.rng.integers(0, 2, n).astype(bool) if self.mirror else np.zeros(n, bool)
        return list(zip(np.concatenate([bg, fg]), flips))


def _read_window_file(path, root_folder, fail):
    """The image paths and the windows, float rows of
    (image index, class_index, overlap, x1, y1, x2, y2)."""
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split()
    where = f"window file '{path}'"
    images, windows, i = [], [], 0
    try:
        while i < len(tokens):
            if tokens[i] != "#" or int(tokens[i + 1]) != len(images):
                fail(f"{where}: expected '# {len(images)}' to start image {len(images)}, got "
                     f"'{' '.join(tokens[i:i + 2])}'")
            image_path = root_folder + tokens[i + 2]
            size = tuple(int(v) for v in tokens[i + 3:i + 6])
            if size[0] != 3:
                fail(f"{where}: image '{image_path}' has {size[0]} channel(s); WindowData "
                     "reads images in colour, so give 3")
            count = int(tokens[i + 6])
            rows = np.array(tokens[i + 7:i + 7 + 6 * count], dtype=np.float64).reshape(-1, 6)
            if len(rows) != count:
                raise IndexError
            windows.append(np.column_stack([np.full(count, len(images)), rows]))
            images.append(image_path)
            i += 7 + 6 * count
    except (IndexError, ValueError):
        fail(f"{where}: image {len(images)} is cut short or has a non-number where a number "
             "belongs; see the format in the WindowData documentation")
    if not images:
        fail(f"{where} is empty")
    return images, np.concatenate(windows)


def _split_windows(windows, fg_threshold, bg_threshold):
    """Foreground (overlap >= fg_threshold) and background (overlap < bg_threshold, label set
    to 0) windows as int rows of (image index, label, x1, y1, x2, y2)."""
    is_fg = windows[:, 2] >= fg_threshold
    is_bg = ~is_fg & (windows[:, 2] < bg_threshold)
    fg, bg = (windows[rows][:, [0, 1, 3, 4, 5, 6]].astype(np.int64) for rows in (is_fg, is_bg))
    bg[:, _LABEL] = 0
    return fg, bg


def _read_color(path):
    try:
        return load_image(path)
    except OSError as e:
        raise ConfnetError(f"cannot read image '{path}': {e.strerror or e}") from e


def _mean_crop(means, crop_size, fail):
    """The mean to subtract as a function of the output region, or None."""
    if means.mean_image is not None:
        mean = means.mean_image
        off = (mean.shape[2] - crop_size) // 2
        if mean.shape[0] != 3 or off < 0 or off + crop_size > mean.shape[1]:
            fail(f"mean_file '{means.param.mean_file}' has shape {mean.shape}; WindowData needs "
                 f"3 channels and at least {crop_size} x {crop_size}")
        return mean[:, off:off + crop_size, off:off + crop_size]
    if len(means.mean_values):
        if len(means.mean_values) not in (1, 3):
            fail(f"give 1 or 3 mean_value, got {len(means.mean_values)}")
        return np.broadcast_to(means.mean_values.reshape(-1, 1, 1), (3, crop_size, crop_size))
    return None


def _warp_window(sample, paths, cache, crop_size, context_pad, square, mean, scale):
    """(top[0] item (3, crop_size, crop_size) float32, label) of one sampled window."""
    window, flip = sample
    path = paths[window[_IMAGE]]
    image = cache[window[_IMAGE]] if cache is not None else _read_color(path)
    box, (out_h, out_w), (pad_h, pad_w) = _geometry(window[_X1:], image.shape[1:], crop_size,
                                                    context_pad, square, flip)
    x1, y1, x2, y2 = box
    if not (0 <= x1 <= x2 < image.shape[2] and 0 <= y1 <= y2 < image.shape[1]):
        raise ConfnetError(f"window ({x1}, {y1}, {x2}, {y2}) is not inside image '{path}' "
                           f"({image.shape[2]} x {image.shape[1]})")
    if out_h < 1 or out_w < 1:
        raise ConfnetError(f"window ({x1}, {y1}, {x2}, {y2}) of image '{path}' warps to "
                           "nothing; drop it from the window file")
    patch = _resize_linear(image[:, y1:y2 + 1, x1:x2 + 1], out_h, out_w).astype(np.float32)
    if flip:
        patch = patch[:, :, ::-1]
    rows, cols = slice(pad_h, pad_h + out_h), slice(pad_w, pad_w + out_w)
    out = np.zeros((3, crop_size, crop_size), np.float32)
    out[:, rows, cols] = patch if mean is None else patch - mean[:, rows, cols]
    out[:, rows, cols] *= scale
    return out, window[_LABEL]


def _geometry(corners, image_hw, crop_size, context_pad, square, flip):
    """Caffe's window arithmetic (in float32, as there): the box (x1, y1, x2, y2) to cut, the
    size (h, w) to warp it to, and where (pad_h, pad_w) it goes in the output."""
    x1, y1, x2, y2 = (int(v) for v in corners)
    if not (context_pad > 0 or square):
        return (x1, y1, x2, y2), (crop_size, crop_size), (0, 0)
    f = np.float32
    crop = f(crop_size)
    context_scale = crop / f(crop_size - 2 * context_pad)
    half_h, half_w = f(y2 - y1 + 1) / f(2), f(x2 - x1 + 1) / f(2)
    center_x, center_y = f(x1) + half_w, f(y1) + half_h
    if square:
        half_h = half_w = max(half_h, half_w)
    x1, x2 = _round(center_x - half_w * context_scale), _round(center_x + half_w * context_scale)
    y1, y2 = _round(center_y - half_h * context_scale), _round(center_y + half_h * context_scale)
    unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
    height, width = image_hw
    pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
    pad_x2, pad_y2 = max(0, x2 - width + 1), max(0, y2 - height + 1)
    x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
    scale_x, scale_y = crop / f(unclipped_w), crop / f(unclipped_h)
    out_w, out_h = _round(f(x2 - x1 + 1) * scale_x), _round(f(y2 - y1 + 1) * scale_y)
    pad_h = _round(f(pad_y1) * scale_y)
    pad_w = _round(f(pad_x2 if flip else pad_x1) * scale_x)  # mirrored with the image
    return (x1, y1, x2, y2), (min(out_h, crop_size - pad_h), min(out_w, crop_size - pad_w)), \
        (pad_h, pad_w)


def _round(x):
    """C's round(): halves away from zero (numpy's round goes to even)."""
    return int(math.copysign(math.floor(abs(float(x)) + 0.5), x))


def _resize_linear(image, out_h, out_w):
    """OpenCV's INTER_LINEAR resize of a uint8 (C, H, W) image: pixel centres aligned
    (src = (dst + 0.5) * in / out - 0.5), edge pixels repeated. Computed in float and rounded,
    which is within one grey level of cv::resize's fixed-point result."""
    (y0, y1), fy = _linear_taps(image.shape[1], out_h)
    (x0, x1), fx = _linear_taps(image.shape[2], out_w)
    img = image.astype(np.float32)
    rows = img[:, y0] * (1 - fy)[:, None] + img[:, y1] * fy[:, None]
    out = rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def _linear_taps(size, out):
    """Source indices (lo, hi) and the weight of hi for each of `out` output positions."""
    pos = (np.arange(out) + 0.5) * (size / out) - 0.5
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo).astype(np.float32)
    outside = (lo < 0) | (lo >= size - 1)
    frac[outside] = 0
    lo = np.clip(lo, 0, size - 1)
    return (lo, np.minimum(lo + 1, size - 1)), frac
