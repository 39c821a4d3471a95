"""The layouts ``benchmarks/bench_layouts.py`` times compute Caser's intent.

A timing of another layout means something only if it computes the same
function: each layout, given the model's filters (the Toeplitz ones, their
free weights filled from them), must give ``DenseIntent``'s intent, the
same gradient for the image and for every parameter (the Toeplitz weights'
gradient summed back onto the filters), hybridized as the benchmark runs
them.
"""
import mxnet as mx
import numpy as onp
import pytest
from helpers import load_benchmark
from mxnet import np, npx

from caser_gluon.dense_intent import DenseIntent

npx.set_np()

K, L, D, D_PRIME, B = 4, 3, 2, 2, 7
# tanh, not relu: relu would zero about half the outputs and gradients,
# and hide a dummy Toeplitz window that wins the max
ACTS = {'ac_conv': 'tanh', 'ac_fc': 'tanh'}


@pytest.fixture(scope='module')
def layouts():
    """``bench_layouts.layout_classes()`` (benchmarks is no package)."""
    return load_benchmark('bench_layouts').layout_classes()


def _params(block):
    """``{name without the block's prefix: Parameter}``."""
    return {p.name[len(block.prefix):]: p
            for p in block.collect_params().values()}


def _toeplitz_from(filters):
    """Toeplitz weights equal to the filters, by a loop.

    Position ``t``'s rows ``(h - 1) d .. h d`` hold height ``h``'s filters
    shifted by ``t`` rows of the image; a height without a window at ``t``
    gets zero weights and a bias of -1e30, so that it never wins the max.
    """
    weight = onp.zeros((L, L * D, L * K), 'float32')
    bias = onp.full((L, L * D), -1e30, 'float32')
    for t in range(L):
        for h in range(1, L - t + 1):
            rows = slice((h - 1) * D, h * D)
            weight[t, rows, t * K:(t + h) * K] = filters[f'conv_h{h}_weight']
            bias[t, rows] = filters[f'conv_h{h}_bias']
    return weight, bias


def _filter_grads(weight_grad, bias_grad):
    """The Toeplitz weights' gradients summed back onto the filters."""
    grads = {}
    for h in range(1, L + 1):
        rows = slice((h - 1) * D, h * D)
        grads[f'conv_h{h}_weight'] = sum(
            weight_grad[t, rows, t * K:(t + h) * K] for t in range(L - h + 1))
        grads[f'conv_h{h}_bias'] = sum(
            bias_grad[t, rows] for t in range(L - h + 1))
    return grads


def _blocks(classes, name):
    """The model's ``DenseIntent`` and layout ``name``'s, same filters."""
    model = DenseIntent(K, L, D, D_PRIME, 0.5, **ACTS)
    model.initialize(init=mx.init.Normal(0.5))
    other = classes[name](K, L, D, D_PRIME, 0.5, **ACTS)
    other.initialize(init=mx.init.Normal(0.5))
    mine = _params(model)
    for key, p in _params(other).items():
        if key in mine:
            p.set_data(mine[key].data())
    if name.startswith('toeplitz'):
        weight, bias = _toeplitz_from(
            {key: p.data().asnumpy() for key, p in mine.items()})
        other.toeplitz_weight.set_data(np.array(weight))
        other.toeplitz_bias.set_data(np.array(bias))
    for block in (model, other):
        block.hybridize(static_alloc=True)
    return model, other


def _run(block, image, masks):
    """Intent, image gradient and parameter gradients of ``sum(out * c)``.
    """
    image = image.copy()
    image.attach_grad()
    with mx.autograd.record():
        out = block(image, *masks)
        loss = (out * np.arange(1, K + 1, dtype='float32')).sum()
    loss.backward()
    grads = {key: p.grad().asnumpy() for key, p in _params(block).items()}
    return out.asnumpy(), image.grad.asnumpy(), grads


@pytest.mark.parametrize('name', ['stacked', 'late-bias', 'toeplitz',
                                  'toeplitz-split'])
def test_layout_computes_the_models_intent_and_gradients(layouts, name):
    rng = onp.random.default_rng(3)
    model, other = _blocks(layouts, name)
    image = np.array(rng.normal(size=(B, L * K)).astype('float32'))
    # masks of 0 and 2, drawn per feature, laid out as each block wants
    v_mask = ((rng.random((B, D_PRIME * K)) < 0.5) * 2).astype('float32')
    h_mask = ((rng.random((B, L * D)) < 0.5) * 2).astype('float32')
    model_masks = [np.array(m) for m in
                   [v_mask, *onp.split(h_mask, L, axis=1)]]
    other_masks = [np.array(v_mask), np.array(h_mask)]
    assert model.mask_widths == tuple(m.shape[1] for m in model_masks)
    assert other.mask_widths == tuple(m.shape[1] for m in other_masks)
    want, want_image, want_grads = _run(model, image, model_masks)
    got, got_image, got_grads = _run(other, image, other_masks)
    onp.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    onp.testing.assert_allclose(got_image, want_image, rtol=1e-4, atol=1e-6)
    if name.startswith('toeplitz'):
        got_grads.update(_filter_grads(got_grads.pop('toeplitz_weight'),
                                       got_grads.pop('toeplitz_bias')))
    assert sorted(got_grads) == sorted(want_grads)
    for key, grad in want_grads.items():
        onp.testing.assert_allclose(got_grads[key], grad, rtol=1e-4,
                                    atol=1e-6, err_msg=key)
