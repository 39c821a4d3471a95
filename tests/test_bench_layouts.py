"""The layouts ``benchmarks/bench_layouts.py`` times compute Caser's intent.

A timing of another layout means something only if it computes the same
function: each layout, given the model's filters (the Toeplitz one, its
free weights filled from them), must give ``DenseIntent``'s intent and,
for the layouts that keep the filters, its gradients.
"""
import os
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np, npx

from caser_gluon.model import DenseIntent

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..',
                                'benchmarks'))
import bench_layouts  # benchmarks/ is a folder of scripts, not a package

npx.set_np()

K, L, D, D_PRIME, B = 4, 3, 2, 2, 7


def _blocks(name):
    """The model's ``DenseIntent`` and layout ``name``'s, same filters.

    The features' activation is ``tanh``: with ``relu``, a window that
    should never win the max (the Toeplitz dummies) could hide behind it.
    """
    acts = {'ac_conv': 'tanh', 'ac_fc': 'relu'}
    model = DenseIntent(K, L, D, D_PRIME, 0.5, **acts)
    model.initialize(init=mx.init.Normal(0.5))
    other = bench_layouts.layout_class(name)(K, L, D, D_PRIME, 0.5, **acts)
    other.initialize(init=mx.init.Normal(0.5))
    mine = {p.name[len(model.prefix):]: p for p in
            model.collect_params().values()}
    for p in other.collect_params().values():
        key = p.name[len(other.prefix):]
        if key in mine:
            p.set_data(mine[key].data())
    if name.startswith('toeplitz'):
        weight, bias = _toeplitz_from(mine)
        other.toeplitz_weight.set_data(np.array(weight))
        other.toeplitz_bias.set_data(np.array(bias))
    return model, other


def _toeplitz_from(params):
    """Free Toeplitz weights equal to the filters, by a loop.

    Position ``t``'s rows ``(h - 1) d .. h d`` hold height ``h``'s filters
    shifted by ``t`` rows of the image; a height without a window at ``t``
    gets zero weights and a bias of -1e30, so that it never wins the max.
    """
    weight = onp.zeros((L, L * D, L * K), 'float32')
    bias = onp.full((L, L * D), -1e30, 'float32')
    for t in range(L):
        for h in range(1, L - t + 1):
            rows = slice((h - 1) * D, h * D)
            weight[t, rows, t * K:(t + h) * K] = (
                params[f'conv_h{h}_weight'].data().asnumpy())
            bias[t, rows] = params[f'conv_h{h}_bias'].data().asnumpy()
    return weight, bias


def _intent(block, image, masks):
    """The intent and ``d loss / d image`` for ``loss = sum(intent * c)``."""
    image = image.copy()
    image.attach_grad()
    with mx.autograd.record():
        out = block(image, *masks)
        loss = (out * np.arange(1, K + 1, dtype='float32')).sum()
    loss.backward()
    return out.asnumpy(), image.grad.asnumpy()


@pytest.mark.parametrize('name', ['stacked', 'late-bias', 'toeplitz',
                                  'toeplitz-split'])
def test_layout_computes_the_models_intent(name):
    rng = onp.random.default_rng(3)
    model, other = _blocks(name)
    image = np.array(rng.normal(size=(B, L * K)).astype('float32'))
    # masks of 0 and 2, drawn per feature, laid out as each block wants
    v_mask = ((rng.random((B, D_PRIME * K)) < 0.5) * 2).astype('float32')
    h_mask = ((rng.random((B, L * D)) < 0.5) * 2).astype('float32')
    by_height = onp.split(h_mask, L, axis=1)
    model_masks = [np.array(m) for m in [v_mask, *by_height]]
    other_masks = [np.array(v_mask), np.array(h_mask)]
    assert model.mask_widths == tuple(m.shape[1] for m in model_masks)
    assert other.mask_widths == tuple(m.shape[1] for m in other_masks)
    want, want_grad = _intent(model, image, model_masks)
    got, got_grad = _intent(other, image, other_masks)
    onp.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    onp.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-6)
