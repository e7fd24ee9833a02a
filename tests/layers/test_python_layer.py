"""Python layer: a user's class with pycaffe's interface, loaded only when allowed."""

import contextlib
import logging
import sys
import textwrap

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.layers import TEST, base, python_layer
from tests.layers.harness import DEVICES, RNG, check_layer, device_backend, make_layer, running_on

# y = k * w[c] * x^2 for NCHW x, with k from param_str and a learnable w per channel.
USER_LAYERS = '''
import numpy as np


class ScaledSquare:
    def setup(self, bottom, top):
        self.k = float(self.param_str)
        self.blobs.add_blob(bottom[0].channels)
        self.blobs[0].data[...] = 1

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        w = self.blobs[0].data.reshape(1, -1, 1, 1)
        top[0].data[...] = self.k * w * bottom[0].data ** 2

    def backward(self, top, propagate_down, bottom):
        x, dy = bottom[0].data, top[0].diff
        w = self.blobs[0].data.reshape(1, -1, 1, 1)
        if propagate_down[0]:
            bottom[0].diff[...] = 2 * self.k * w * x * dy
        self.blobs[0].diff[...] += (self.k * x ** 2 * dy).sum(axis=(0, 2, 3))


class Phase:
    def __init__(self, param):
        self.name = param.name

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[...] = self.phase
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The user's module, written into tmp_path (on sys.path); python layers allowed."""
    (tmp_path / "user_layers_test.py").write_text(textwrap.dedent(USER_LAYERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_layers_test", raising=False)
    monkeypatch.setattr(python_layer, "_allowed", True)
    yield "user_layers_test"
    sys.modules.pop("user_layers_test", None)


def python_text(module, layer, param_str=""):
    return (f'type: "Python" bottom: "x" top: "y" python_param {{ module: "{module}" '
            f'layer: "{layer}" param_str: "{param_str}" }}')


def test_user_layer_forward_and_gradient(user_module):
    x = RNG.normal(size=(2, 3, 4, 5))
    w = RNG.normal(size=3)
    check_layer(python_text(user_module, "ScaledSquare", "1.5"), [x],
                [1.5 * w[None, :, None, None] * x ** 2], params=[w])


def test_phase_and_constructor_argument(user_module):
    layer = make_layer(python_text(user_module, "Phase"), TEST, name="p")
    top = [Blob((), np.float64)]
    layer.setup([Blob((2,), np.float64)], top)
    layer.forward([], top)
    assert top[0].shape == (1,) and top[0].data[0] == TEST and layer.impl.name == "p"


def test_refused_unless_allowed(user_module, monkeypatch):
    monkeypatch.setattr(python_layer, "_allowed", False)
    layer = make_layer(python_text(user_module, "ScaledSquare", "1"))
    with pytest.raises(ConfnetError, match="--allow-python-layers") as info:
        layer.setup([Blob((1, 1))], [Blob()])
    assert "allow_python_layers()" in str(info.value) and "\n" not in str(info.value)
    python_layer.allow_python_layers()
    layer.setup([Blob((1, 1, 1, 1))], [Blob()])
    python_layer.allow_python_layers(False)
    assert not python_layer._allowed


def test_module_found_in_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "cwd_layer_test.py").write_text(textwrap.dedent(USER_LAYERS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(python_layer, "_allowed", True)
    monkeypatch.delitem(sys.modules, "cwd_layer_test", raising=False)
    layer = make_layer(python_text("cwd_layer_test", "ScaledSquare", "2"))
    top = [Blob((), np.float64)]
    layer.setup([Blob((1, 2, 1, 1), np.float64)], top)
    assert top[0].shape == (1, 2, 1, 1) and str(tmp_path) not in sys.path
    sys.modules.pop("cwd_layer_test", None)


def test_missing_module_or_class(user_module):
    with pytest.raises(ConfnetError, match="cannot import python_param.module 'no_such_mod'"):
        make_layer(python_text("no_such_mod", "X")).setup([Blob((1,))], [Blob()])
    with pytest.raises(ConfnetError, match="has no class 'Nope'"):
        make_layer(python_text(user_module, "Nope")).setup([Blob((1,))], [Blob()])


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_runs_on_the_host_with_one_copy_each_way_logged_once(device, user_module, caplog,
                                                                  monkeypatch):
    """Between device layers the user's code runs on the host: per pass one device -> host copy
    of what it reads (the bottom; the top's diff and its parameter's) and one host -> device copy
    of what it writes (the top, the bottom's diff) when the device reads it; the same numbers as
    on the host."""
    backend = device_backend(device)
    monkeypatch.setattr(base, "_host_fallbacks", set())
    caplog.set_level(logging.INFO, logger="confnet")
    x, dy = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(2, 3, 4, 5))
    runs = []
    for side in (None, device):
        layer = make_layer(python_text(user_module, "ScaledSquare", "1.5"), dtype=np.float32)
        with running_on(side) if side is not None else contextlib.nullcontext():
            bottom, top = [Blob(x.shape)], [Blob()]
            bottom[0].set_data(x)
            layer.setup(bottom, top)
            for _ in range(2):
                layer.blobs[0].zero_diff()
                bottom[0].set_data(x)   # on the device: the device is newer
                backend.copies.reset()
                layer.reshape(bottom, top)
                layer.forward(bottom, top)
                if side is not None:
                    assert (backend.copies.dtoh, backend.copies.htod) == (1, 0)
                    top[0].gpu_data   # the next device layer reads the top: one copy over
                    assert backend.copies.htod == 1
                top[0].set_diff(dy)
                backend.copies.reset()
                layer.backward(top, [True], bottom)
                if side is not None:   # the top's diff and the parameter's (zeroed on the device)
                    assert (backend.copies.dtoh, backend.copies.htod) == (2, 0)
                    bottom[0].gpu_diff
                    assert backend.copies.htod == 1
            runs.append([top[0].cpu_data.copy(), bottom[0].cpu_diff.copy(),
                         layer.blobs[0].cpu_diff.copy()])
    for want, got in zip(*runs):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    notes = [r for r in caplog.records if "Python" in r.getMessage()]
    assert len(notes) == 1 and "runs on the host by design" in notes[0].getMessage()
