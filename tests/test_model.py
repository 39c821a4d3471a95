"""Tests of caser_gluon.model.Caser against a NumPy reference."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from caser_gluon.model import Caser

K, USERS, ITEMS, L = 6, 7, 30, 4


def make_net(*, d=3, d_prime=2, hybridize=False, **kwargs):
    net = Caser(K, USERS, ITEMS, L=L, d=d, d_prime=d_prime, drop_ratio=0.0,
                **kwargs)
    net.initialize(init=mx.init.Normal(0.5))
    if hybridize:
        net.hybridize()
    return net


def batch(size, rng):
    users = rng.integers(0, USERS, size)
    seqs = rng.integers(0, ITEMS + 1, (size, L))     # ITEMS is the padding
    return users, seqs


def reference_vectors(net, users, seqs):
    """Caser's user vector computed with loops over the paper's formulas."""
    out = []
    for u, seq in zip(users, seqs):
        feats, parts = [], []
        if net.use_user:
            parts.append(net.P.weight.data().asnumpy()[u])
        if not net.use_seq:
            out.append(parts[0])
            continue
        E = net.Q.weight.data().asnumpy()[seq]            # (L, k)
        if net.conv_v is not None:
            w = net.conv_v.weight.data().asnumpy()        # (d', 1, L, 1)
            b = net.conv_v.bias.data().asnumpy()
            v = onp.einsum('cl,lk->ck', w[:, 0, :, 0], E) + b[:, None]
            feats.append(v.ravel())
        for h, conv in enumerate(net.conv_h, start=1):
            w = conv.weight.data().asnumpy()              # (d, 1, h, k)
            b = conv.bias.data().asnumpy()
            acts = [onp.maximum((w[:, 0] * E[t:t + h]).sum((1, 2)) + b, 0)
                    for t in range(L - h + 1)]
            feats.append(onp.max(acts, axis=0))
        o = onp.concatenate(feats)
        W = net.fc.weight.data().asnumpy()
        z = onp.maximum(W @ o + net.fc.bias.data().asnumpy(), 0)
        out.append(onp.concatenate([z] + parts))
    return onp.array(out)


def reference_scores(net, users, seqs, items):
    x = reference_vectors(net, users, seqs)
    Qp = net.Q_prime.weight.data().asnumpy()
    b = net.b.weight.data().asnumpy()[:, 0]
    items = onp.asarray(items)
    flat = items.reshape(len(users), -1)
    s = onp.einsum('bk,bnk->bn', x, Qp[flat]) + b[flat]
    return s.reshape(items.shape)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('d, d_prime', [(3, 2), (0, 2), (3, 0)])
def test_scores_equal_numpy_reference(hybridize, d, d_prime):
    rng = onp.random.default_rng(0)
    net = make_net(d=d, d_prime=d_prime, hybridize=hybridize)
    users, seqs = batch(5, rng)
    one = rng.integers(0, ITEMS, 5)
    many = rng.integers(0, ITEMS, (5, 3))
    got_one = net(np.array(users), np.array(seqs), np.array(one))
    got_many = net(np.array(users), np.array(seqs), np.array(many))
    assert got_one.shape == (5,) and got_many.shape == (5, 3)
    onp.testing.assert_allclose(got_one.asnumpy(),
                                reference_scores(net, users, seqs, one),
                                rtol=1e-4, atol=1e-5)
    onp.testing.assert_allclose(got_many.asnumpy(),
                                reference_scores(net, users, seqs, many),
                                rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('hybridize', [False, True])
def test_batch_of_one_row(hybridize):
    net = make_net(hybridize=hybridize)
    rng = onp.random.default_rng(1)
    users, seqs = batch(1, rng)
    for items, shape in [([3], (1,)), ([[3]], (1, 1)), ([[3, 4, 5]], (1, 3))]:
        out = net(np.array(users), np.array(seqs), np.array(items))
        assert out.shape == shape
        onp.testing.assert_allclose(
            out.asnumpy(), reference_scores(net, users, seqs, items),
            rtol=1e-4, atol=1e-5)


def test_hybridized_equals_imperative():
    rng = onp.random.default_rng(2)
    net = make_net()
    users, seqs = batch(8, rng)
    items = np.array(rng.integers(0, ITEMS, (8, 2)))
    before = net(np.array(users), np.array(seqs), items).asnumpy()
    net.hybridize()
    after = net(np.array(users), np.array(seqs), items).asnumpy()
    onp.testing.assert_allclose(before, after, rtol=1e-6)


@pytest.mark.parametrize('d, d_prime', [(16, 4), (0, 4), (16, 0)])
def test_layer_shapes(d, d_prime):
    net = Caser(10, USERS, ITEMS, L=5, d=d, d_prime=d_prime)
    net.initialize()
    b = 9
    users = np.zeros(b, dtype='int32')
    seqs = np.ones((b, 5), dtype='int32')
    emb = np.expand_dims(net.Q(seqs), 1)
    assert net.P(users).shape == (b, 10)
    assert emb.shape == (b, 1, 5, 10)
    width = 0
    if d_prime:
        assert net.conv_v(emb).shape == (b, d_prime, 1, 10)
        width += d_prime * 10
    else:
        assert net.conv_v is None
    assert len(net.conv_h) == (5 if d else 0)
    for h, conv in enumerate(net.conv_h, start=1):
        out = conv(emb)
        assert out.shape == (b, d, 5 - h + 1, 1)
        assert out.max(axis=(2, 3)).shape == (b, d)
        width += d
    assert net.fc(np.zeros((b, width))).shape == (b, 10)
    assert net.user_vectors(users, seqs).shape == (b, 20)
    assert net.Q_prime.weight.shape == (ITEMS, 20)
    assert net.Q.weight.shape == (ITEMS + 1, 10)       # + padding row
    assert net(users, seqs, np.zeros((b, 2))).shape == (b, 2)


@pytest.mark.parametrize('use_user, use_seq', [(False, True), (True, False)])
def test_ablations_equal_reference(use_user, use_seq):
    net = make_net(use_user=use_user, use_seq=use_seq, hybridize=True)
    rng = onp.random.default_rng(3)
    users, seqs = batch(4, rng)
    items = rng.integers(0, ITEMS, (4, 2))
    got = net(np.array(users), np.array(seqs), np.array(items)).asnumpy()
    assert net.Q_prime.weight.shape == (ITEMS, K)
    onp.testing.assert_allclose(got, reference_scores(net, users, seqs,
                                                      items),
                                rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kwargs, message', [
    ({'d': 0, 'd_prime': 0}, 'one of them'),
    ({'L': 0}, 'L must be a positive integer'),
    ({'drop_ratio': 1.5}, 'drop_ratio'),
    ({'use_user': False, 'use_seq': False}, 'cannot both be False'),
])
def test_bad_arguments(kwargs, message):
    args = {'num_factors': 4, 'num_users': 3, 'num_items': 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        Caser(**args)
