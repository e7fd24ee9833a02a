"""Images to an LMDB of Datums, as Caffe's convert_imageset does, decoding in parallel.

The source is a folder with one subfolder per class (labels 0, 1, ... by sorted folder name,
written to `labels.txt` inside the database folder, so each database carries its own mapping)
or a Caffe list file of `relative/path label` lines.
Keys are `%08d_<relative path>` with the index in the (shuffled) list, so an unreadable image
leaves a gap, as in Caffe. With `encoded`, a file that needs no change (no resize, right channel
count, same format) is stored byte for byte; otherwise the image is decoded and re-encoded.
Resizing uses Pillow's bilinear filter, which differs slightly from OpenCV's when shrinking.
"""

import contextlib
import io
import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from confnet.data.datum import array_to_datum, datum_key, encode_image, image_to_array
from confnet.data.lmdb_io import LMDBWriter
from confnet.errors import ConfnetError
from confnet.signals import default_sigterm

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm"}
_CHUNK = 64  # images per task handed to a worker
LABELS_FILE = "labels.txt"  # class names, one a line, inside the database folder


@dataclass
class ConvertResult:
    """What convert_imageset did: `bad` lists (path, reason) of the images it skipped."""

    db: str
    written: int
    bad: list = field(default_factory=list)
    labels: list = None
    seconds: float = 0.0
    not_images: int = 0   # files in the class folders without an image extension, ignored

    @property
    def skipped(self):
        return len(self.bad)

    def __str__(self):
        ignored = (f", {self.not_images} files that are not images ignored"
                   if self.not_images else "")
        return (f"{self.written} images written, {self.skipped} unreadable skipped{ignored}, "
                f"in {self.seconds:.1f} s")


@dataclass(frozen=True)
class _Options:
    resize_height: int
    resize_width: int
    gray: bool
    encoded: bool
    encode_type: str


def convert_imageset(src, db, *, root=None, resize_height=0, resize_width=0, gray=False,
                     shuffle=False, encoded=False, encode_type="", check_size=False, workers=None,
                     processes=True, seed=0, on_bad_image="skip", progress=None,
                     overwrite=False):
    """Writes the images of `src` (class folders or a list file) to a new LMDB `db`.

    As convert_imageset's flags: resize_height/resize_width (both > 0 to resize), gray, shuffle
    (with `seed`), encoded/encode_type (format of encoded
    images; '' keeps each file's own format, as Caffe does), check_size (all images must have one shape). `root` prefixes a list file's paths
    (default: the list file's folder). workers: decoding processes, default the CPU count
    (threads if not `processes`: slower for small images, whose decoding holds the GIL).
    on_bad_image: 'skip' (report and go on) or 'fail'. progress: a bar on stderr; None shows it
    when stderr is a terminal. overwrite: replace an existing `db` once the new one is complete.
    Returns a ConvertResult.
    """
    if on_bad_image not in ("skip", "fail"):
        raise ConfnetError(f"on_bad_image must be 'skip' or 'fail', got '{on_bad_image}'")
    if (resize_height > 0) != (resize_width > 0):
        log.warning("resize needs both resize_height and resize_width; images are not resized")
    started = time.monotonic()
    src, db = os.fspath(src), os.fspath(db)
    items, labels, not_images = _list_images(src, root)
    if shuffle:
        items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
    if labels is not None:
        _compare_with_siblings(db, labels)
    options = _Options(resize_height, resize_width, gray, encoded, encode_type.lower())
    result = ConvertResult(db=db, written=0, labels=labels, not_images=not_images)
    workers = workers or os.cpu_count() or 1
    # The pool starts before the database is opened, so no worker inherits the LMDB environment.
    with _pool(processes, workers) as pool, LMDBWriter(db, overwrite=overwrite) as writer, \
            _Progress(len(items), progress) as bar:
        first_shape = None
        for index, path, key, value, shape, error in _load_all(pool, workers, items, options):
            bar.advance()
            if error is not None:
                with bar.set_aside():
                    _bad_image(result, path, error, on_bad_image)
                continue
            first_shape = first_shape or shape
            if check_size and shape != first_shape:
                raise ConfnetError(f"image '{path}' is {_dims(shape)} but the first one is "
                                   f"{_dims(first_shape)}; resize them or drop check_size")
            writer.put(datum_key(index, key), value)
            result.written += 1
        if labels is not None:
            writer.write_file(LABELS_FILE, "".join(name + "\n" for name in labels))
    result.seconds = time.monotonic() - started
    return result


@contextlib.contextmanager
def _pool(processes, workers):
    """Decoding workers that are all gone when the block ends, however it ends: queued chunks
    are cancelled (an interrupt does not wait for the whole list) and the workers joined."""
    if processes:
        pool = ProcessPoolExecutor(workers, initializer=default_sigterm)
    else:
        pool = ThreadPoolExecutor(workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _list_images(src, root):
    """[(relative path, absolute path, label)], the class names (None for a list file) and the
    number of files ignored for not being images."""
    if os.path.isdir(src):
        return _list_class_folders(src)
    if os.path.isfile(src):
        return read_list_file(src, root), None, 0
    raise ConfnetError(f"image source '{src}' does not exist; give a folder of class subfolders "
                       "or a list file of 'path label' lines")


def _list_class_folders(src):
    classes = sorted(name for name in os.listdir(src)
                     if not name.startswith(".") and os.path.isdir(os.path.join(src, name)))
    if not classes:
        raise ConfnetError(f"folder '{src}' has no class subfolders; put the images of each class "
                           "in a subfolder named after it")
    items, not_images = [], 0
    for label, name in enumerate(classes):
        for folder, dirs, files in os.walk(os.path.join(src, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(files):
                if os.path.splitext(file)[1].lower() not in IMAGE_EXTENSIONS:
                    not_images += not file.startswith(".")
                    continue
                path = os.path.join(folder, file)
                items.append((os.path.relpath(path, src).replace(os.sep, "/"), path, label))
    if not items:
        raise ConfnetError(f"folder '{src}' has no images in its class subfolders (extensions: "
                           f"{' '.join(sorted(IMAGE_EXTENSIONS))})")
    return items, classes, not_images


def read_list_file(list_file, root=None):
    """[(relative path, path, label)] of a Caffe list file; paths are relative to `root`
    (default: the list file's folder)."""
    root = os.path.dirname(os.path.abspath(list_file)) if root is None else os.fspath(root)
    items = []
    with open(list_file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ConfnetError(f"{list_file}:{number}: expected 'relative/path label', "
                                   f"got '{line}'")
            items.append((parts[0], os.path.join(root, parts[0]), int(parts[1])))
    if not items:
        raise ConfnetError(f"list file '{list_file}' has no 'path label' lines")
    return items


def read_labels(db):
    """The class names of a database converted from class folders (None if it has none)."""
    path = os.path.join(os.fspath(db), LABELS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _compare_with_siblings(db, labels):
    """Warn when a database beside `db` (train beside test) numbers other classes: label k
    would not mean the same class in both."""
    folder = os.path.dirname(os.path.abspath(db))
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        other = os.path.join(folder, name)
        theirs = read_labels(other) if other != os.path.abspath(db) else None
        if theirs is None or theirs == labels:
            continue
        only_here = sorted(set(labels) - set(theirs))
        only_there = sorted(set(theirs) - set(labels))
        difference = (f"classes only here: {', '.join(only_here) or 'none'}; only in '{name}': "
                      f"{', '.join(only_there) or 'none'}" if only_here or only_there
                      else "the same classes in another order")
        log.warning("'%s' numbers its classes differently from '%s' beside it (%s); their "
                    "labels do not mean the same classes", db, other, difference)


def _load_all(pool, workers, items, options):
    """(index, path, relative path, value, shape, error) per image, in order, loaded by `pool`."""
    chunks = [[(i, *item) for i, item in enumerate(items[s:s + _CHUNK], s)]
              for s in range(0, len(items), _CHUNK)]
    pending = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(_load_chunk, chunk, options))
            # Bounded look-ahead: decoded images wait in memory only a few chunks at a time.
            if len(pending) >= 4 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _load_chunk(chunk, options):
    results = []
    for index, key, path, label in chunk:
        try:
            value, shape = _load_image(path, label, options)
            results.append((index, path, key, value, shape, None))
        except Exception as e:  # noqa: BLE001 - any failure to read or decode: a bad image
            results.append((index, path, key, None, None, _reason(e)))
    return results


def _reason(error):
    """Why an image could not be loaded, in words (the path is reported beside it)."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def load_image(path, resize_height=0, resize_width=0, gray=False):
    """An image file as a uint8 CHW array (1 channel, or 3 in BGR order), as Caffe's
    ReadImageToCVMat: resized to resize_height x resize_width when both are > 0."""
    with open(path, "rb") as f:
        raw = f.read()
    return image_to_array(_open_image(raw, resize_height, resize_width, gray), gray)


def _open_image(raw, resize_height, resize_width, gray):
    image = Image.open(io.BytesIO(raw))
    image.load()
    if resize_height > 0 and resize_width > 0:
        image = image.convert("L" if gray else "RGB").resize((resize_width, resize_height),
                                                             Image.BILINEAR)
    return image


def _load_image(path, label, options):
    """The serialized Datum of one image file and the image's (C, H, W)."""
    with open(path, "rb") as f:
        raw = f.read()
    image = _open_image(raw, options.resize_height, options.resize_width, options.gray)
    shape = (1 if options.gray else 3, image.height, image.width)
    if not options.encoded:
        return array_to_datum(image_to_array(image, options.gray), label).SerializeToString(), shape
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    encode_type = options.encode_type or extension
    unchanged = options.resize_height <= 0 or options.resize_width <= 0
    if unchanged and image.mode == ("L" if options.gray else "RGB") and \
            _same_format(extension, encode_type):
        data = raw
    else:
        data = encode_image(image_to_array(image, options.gray), encode_type)
    return array_to_datum(None, label, encoded_bytes=data).SerializeToString(), shape


def _same_format(extension, encode_type):
    jpeg = ("jpg", "jpeg")
    return extension == encode_type or (extension in jpeg and encode_type in jpeg)


def _bad_image(result, path, error, on_bad_image):
    if on_bad_image == "fail":
        raise ConfnetError(f"cannot read image '{path}': {error}")
    log.warning("skipping unreadable image '%s': %s", path, error)
    result.bad.append((path, error))


def _dims(shape):
    return "x".join(str(d) for d in shape)


class _Progress:
    """A one-line progress bar on stderr (a line every 10% when stderr is not a terminal)."""

    def __init__(self, total, enabled=None, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self.total, self.done = total, 0
        self.started = self.shown_at = time.monotonic()
        self.shown_tenth = 0

    def advance(self):
        self.done += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty and (now - self.shown_at >= 0.1 or self.done == self.total):
            self.shown_at = now
            self.stream.write("\r" + self._line(now))
        elif not self.tty and self.done * 10 // max(self.total, 1) > self.shown_tenth:
            self.shown_tenth = self.done * 10 // max(self.total, 1)
            self.stream.write(self._line(now) + "\n")
        self.stream.flush()

    @contextlib.contextmanager
    def set_aside(self):
        """Clear the bar's line for a message written inside the block, then draw it again
        below, so a warning never glues onto the bar."""
        if self.enabled and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
        yield
        if self.enabled and self.tty:
            self.stream.write("\r" + self._line(time.monotonic()))
            self.stream.flush()

    def _line(self, now):
        fraction = self.done / max(self.total, 1)
        bar = "#" * int(30 * fraction)
        rate = self.done / max(now - self.started, 1e-9)
        eta = int((self.total - self.done) / rate) if rate else 0
        return (f"[{bar:<30}] {self.done}/{self.total} {100 * fraction:3.0f}% "
                f"{rate:7.0f} img/s ETA {eta // 60}:{eta % 60:02d}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
