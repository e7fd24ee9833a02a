import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
)


def embed_text(**settings):
    return layer_text("Embed", "embed_param", **settings)


def expected(index, w, b=None):
    out = np.zeros(index.shape + (w.shape[1],))
    for pos in np.ndindex(*index.shape):
        out[pos] = w[int(index[pos])] + (b if b is not None else 0)
    return out


def test_lookup_with_bias():
    index = np.array([[0.0, 3.0, 3.0], [1.0, 0.0, 4.0]])
    w, b = RNG.normal(size=(5, 4)), RNG.normal(size=4)
    layer, _, _ = check_layer(embed_text(num_output=4, input_dim=5), [index],
                              [expected(index, w, b)], no_grad=(0,), params=[w, b])
    assert [blob.shape for blob in layer.blobs] == [(5, 4), (4,)]


def test_without_bias():
    index = np.array([2.0, 2.0, 0.0, 1.0])
    w = RNG.normal(size=(3, 2))
    layer, _, top = check_layer(embed_text(num_output=2, input_dim=3, bias_term="false"),
                                [index], [expected(index, w)], no_grad=(0,), params=[w])
    assert len(layer.blobs) == 1 and top[0].shape == (4, 2)


def test_weight_gradient_accumulates_repeated_indices():
    index = np.array([1.0, 1.0, 0.0])
    layer, bottom, top = check_layer(embed_text(num_output=2, input_dim=3), [index],
                                     check_grad=False)
    top[0].diff[...] = [[1, 2], [3, 4], [5, 6]]
    layer.blobs[0].diff[...] = 1.0
    layer.blobs[1].diff[...] = 0.0
    layer.backward(top, [False], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, [[6, 7], [5, 7], [1, 1]])
    np.testing.assert_array_equal(layer.blobs[1].diff, [9, 12])


def test_fillers():
    text = ('type: "Embed" embed_param { num_output: 3 input_dim: 4 '
            'weight_filler { type: "uniform" min: 1 max: 2 } '
            'bias_filler { type: "constant" value: 0.5 } }')
    layer, _, _ = check_layer(text, [np.array([0.0, 3.0])], check_grad=False)
    assert np.all((layer.blobs[0].data >= 1) & (layer.blobs[0].data <= 2))
    assert np.all(layer.blobs[1].data == 0.5)


@pytest.mark.parametrize("bad", [5.0, -1.0, 1.5])
def test_bad_index(bad):
    layer = make_layer(embed_text(num_output=2, input_dim=5), name="emb")
    bottom, top = make_blobs([np.array([[0.0, bad]])]), make_blobs([0.0])
    layer.setup(bottom, top)
    with pytest.raises(ConfnetError, match=r"layer 'emb'.*at index \(0, 1\).*0\.\.4"):
        layer.forward(bottom, top)


@pytest.mark.parametrize("missing", ["num_output: 2", "input_dim: 5"])
def test_sizes_required(missing):
    with pytest.raises(ConfnetError, match="must be set"):
        make_layer(f'type: "Embed" embed_param {{ {missing} }}').setup(
            make_blobs([np.zeros(2)]), make_blobs([0.0]))


def test_no_gradient_to_the_indices():
    layer, bottom, top = check_layer(embed_text(num_output=2, input_dim=3),
                                     [np.array([0.0, 2.0])], check_grad=False)
    assert not layer.allow_force_backward(0)
    with pytest.raises(ConfnetError, match="indices"):
        layer.backward(top, [True], bottom)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, bias_term", [((3, 5), "true"), ((4, 75), "false")])
def test_gpu(device, shape, bias_term):
    # Repeated indices (their gradients summed in order) and rows never used; 300 positions
    # span two chunks of the backward's scan. The weight gradient must match the CPU bits.
    index = RNG.integers(0, 6, size=shape).astype(float)
    text = embed_text(num_output=37, input_dim=7, bias_term=bias_term,
                      weight_filler='{ type: "gaussian" }', bias_filler='{ type: "gaussian" }')
    want = check_layer_gpu(text, [index], device=device, no_grad=(0,))
    assert not want["param 0 diff"][6].any()   # row 6 is never used


@pytest.mark.parametrize("device", DEVICES)
def test_backward_is_deterministic_gpu(device):
    # Many positions on few rows: the weight gradient comes out the same bits on every run
    # (and, added in position order, the CPU's bits too). No bias: its sum has another order.
    index = RNG.integers(0, 3, size=(2, 200)).astype(float)
    text = embed_text(num_output=5, input_dim=3, bias_term="false",
                      weight_filler='{ type: "gaussian" }')
    check_layer_gpu(text, [index], device=device, no_grad=(0,), rtol=0, atol=0)
