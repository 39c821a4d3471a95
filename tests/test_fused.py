"""caser_gluon.fused: the compiled horizontal operator.

Against a NumPy brute force (values, the window of each maximum, ties to
the first), against the dense layers it replaces (scores and every
gradient, the generic path and the 16-filter one), the dropout masks drawn
draw for draw as the dense form's, a few training steps, and the fallback
when it cannot be built.
"""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from caser_gluon import fused
from caser_gluon.model import Caser, resolve_conv
from caser_gluon.train import make_trainer, masked_scorer

pytestmark = pytest.mark.skipif(
    not fused.load(), reason=f'no fused operator: {fused.unavailable_reason()}')

USERS, ITEMS = 9, 40


def brute_force(image, weights, biases, L):
    """(pooled, argmax), both (b, L d), by loops over windows."""
    b, d = len(image), len(biases[0])
    k = image.shape[1] // L
    pooled = onp.zeros((b, L * d), 'float32')
    where = onp.zeros((b, L * d), int)
    for h in range(1, L + 1):
        for r in range(b):
            for j in range(d):
                values = [image[r, t * k:(t + h) * k] @ weights[h - 1][j]
                          + biases[h - 1][j] for t in range(L - h + 1)]
                pooled[r, (h - 1) * d + j] = max(values)
                where[r, (h - 1) * d + j] = int(onp.argmax(values))  # first
    return pooled, where


@pytest.mark.parametrize('L, k, d', [(5, 10, 16), (5, 3, 4), (1, 4, 16),
                                     (3, 7, 5)])
def test_operator_equals_brute_force(L, k, d):
    rng = onp.random.default_rng(L * 100 + d)
    image = rng.normal(size=(6, L * k)).astype('float32')
    image[0] = onp.tile(image[0, :k], L)        # equal windows: ties
    weights = [rng.normal(size=(d, h * k)).astype('float32')
               for h in range(1, L + 1)]
    biases = [rng.normal(size=d).astype('float32') for _ in range(L)]
    args = [mx.nd.array(a) for a in [image, *sum(zip(weights, biases), ())]]
    pooled, where = mx.nd.caser_horizontal_max(*args, L=L)
    want, want_where = brute_force(image, weights, biases, L)
    onp.testing.assert_allclose(pooled.asnumpy(), want, rtol=1e-5,
                                atol=1e-5)
    onp.testing.assert_array_equal(where.asnumpy(), want_where)
    assert where.asnumpy()[0].max() == 0        # a tie goes to the first


def _pair(d, L=5, k=10, drop_ratio=0.3, seed=0):
    """A dense and a fused Caser with the same parameters, hybridized."""
    nets = {}
    for conv in ('dense', 'fused'):
        mx.random.seed(seed)
        net = Caser(k, USERS, ITEMS, L=L, d=d, d_prime=2,
                    drop_ratio=drop_ratio, conv=conv, ac_conv='tanh')
        net.initialize(init=mx.init.Normal(0.3))
        net.hybridize(static_alloc=True)
        nets[conv] = net
    return nets['dense'], nets['fused']


@pytest.mark.parametrize('d', [16, 3])
def test_fused_model_equals_dense_with_every_gradient(d):
    dense, fused_net = _pair(d)
    assert fused_net.conv == 'fused' and fused_net.intent.fused
    rng = onp.random.default_rng(1)
    users = np.array(rng.integers(0, USERS, 33))
    seqs = np.array(rng.integers(0, ITEMS + 1, (33, 5)))
    items = np.array(rng.integers(0, ITEMS, (33, 3)))
    masks = dense.draw_masks(onp.random.default_rng(2), 33)
    joined = fused_net.draw_masks(onp.random.default_rng(2), 33)
    grads = {}
    for net, m in ((dense, masks), (fused_net, joined)):
        with mx.autograd.record():
            scores = masked_scorer(net)(users, seqs, items,
                                        *[np.array(a) for a in m])
            loss = (scores * np.arange(1, 4, dtype='float32')).sum()
        loss.backward()
        # the same blocks in the same order: parameters pair by position
        grads[net.conv] = ([(n, p.grad().asnumpy())
                            for n, p in net.collect_params().items()],
                           scores.asnumpy())
    (want, want_scores), (got, got_scores) = grads['dense'], grads['fused']
    onp.testing.assert_allclose(got_scores, want_scores, rtol=1e-5,
                                atol=1e-5)
    assert len(got) == len(want) == len(list(dense.collect_params()))
    for (name, grad), (_, got_grad) in zip(want, got):
        assert got_grad.shape == grad.shape
        onp.testing.assert_allclose(got_grad, grad, rtol=1e-4, atol=1e-5,
                                    err_msg=name)


def test_fused_masks_are_the_dense_masks_joined():
    dense, fused_net = _pair(16)
    assert dense.mask_widths == (20,) + (16,) * 5
    assert fused_net.mask_widths == (20, 80)
    masks = dense.draw_masks(onp.random.default_rng(5), 7)
    joined = fused_net.draw_masks(onp.random.default_rng(5), 7)
    onp.testing.assert_array_equal(joined[0], masks[0])
    onp.testing.assert_array_equal(joined[1], onp.concatenate(masks[1:], 1))


def test_training_steps_match_dense():
    dense, fused_net = _pair(16, drop_ratio=0.0)
    rng = onp.random.default_rng(3)
    trainers = [make_trainer(net, lr=0.01, wd=0.0, optimizer='adam',
                             kvstore='device') for net in (dense, fused_net)]
    for _ in range(5):
        users = np.array(rng.integers(0, USERS, 64))
        seqs = np.array(rng.integers(0, ITEMS + 1, (64, 5)))
        items = np.array(rng.integers(0, ITEMS, (64, 2)))
        for net, trainer in zip((dense, fused_net), trainers):
            with mx.autograd.record():
                s = net(users, seqs, items)
                loss = mx.npx.activation(s[:, 1] - s[:, 0],
                                         act_type='softrelu').sum()
            loss.backward()
            trainer.step(64)
    for (name, p), q in zip(dense.collect_params().items(),
                            fused_net.collect_params().values()):
        onp.testing.assert_allclose(q.data().asnumpy(), p.data().asnumpy(),
                                    rtol=1e-4, atol=1e-5, err_msg=name)


def test_auto_falls_back_to_dense_without_the_operator(monkeypatch):
    assert resolve_conv('auto') == 'fused'       # here it loads
    monkeypatch.setitem(fused._state, 'loaded', False)
    monkeypatch.setitem(fused._state, 'reason', 'no C++ compiler')
    assert resolve_conv('auto') == 'dense'
    assert Caser(4, 3, 5).conv == 'dense'
    with pytest.raises(ValueError, match=r'no C\+\+ compiler'):
        Caser(4, 3, 5, conv='fused')


def test_build_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv('CXX', str(tmp_path / 'no-such-compiler'))
    with pytest.raises(RuntimeError, match='no C.. compiler'):
        fused.build(tmp_path / 'lib.so')
    assert not (tmp_path / 'lib.so').exists()
