"""Tests of caser_gluon.model.Caser against a NumPy reference."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from caser_gluon.model import Caser

K, USERS, ITEMS, L = 6, 7, 30, 4


def make_net(*, d=3, d_prime=2, hybridize=False, conv='dense', **kwargs):
    net = Caser(K, USERS, ITEMS, L=L, d=d, d_prime=d_prime, drop_ratio=0.0,
                conv=conv, **kwargs)
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
            w = net.conv_v.weight.data().asnumpy().reshape(-1, L)  # (d', L)
            b = net.conv_v.bias.data().asnumpy()
            v = onp.einsum('cl,lk->ck', w, E) + b[:, None]     # (d', k)
            feats.append(v.ravel() if net.conv == 'conv2d' else v.T.ravel())
        for h, conv in enumerate(net.conv_h, start=1):
            w = conv.weight.data().asnumpy().reshape(-1, h, K)  # (d, h, k)
            b = conv.bias.data().asnumpy()
            acts = [onp.maximum((w * E[t:t + h]).sum((1, 2)) + b, 0)
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


@pytest.mark.parametrize('conv', ['dense', 'conv2d'])
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('d, d_prime', [(3, 2), (0, 2), (3, 0)])
def test_scores_equal_numpy_reference(hybridize, d, d_prime, conv):
    rng = onp.random.default_rng(0)
    net = make_net(d=d, d_prime=d_prime, hybridize=hybridize, conv=conv)
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


@pytest.mark.parametrize('conv', ['dense', 'conv2d'])
@pytest.mark.parametrize('hybridize', [False, True])
def test_batch_of_one_row(hybridize, conv):
    net = make_net(hybridize=hybridize, conv=conv)
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
    emb = net.Q(seqs)
    assert net.P(users).shape == (b, 10)
    assert emb.shape == (b, 5, 10)
    image = emb.reshape(b, 50)
    width = 0
    if d_prime:
        assert net.conv_v(emb.swapaxes(1, 2)).shape == (b, 10, d_prime)
        width += d_prime * 10
    else:
        assert net.conv_v is None
    assert len(net.conv_h) == (5 if d else 0)
    for h, dense in enumerate(net.conv_h, start=1):
        assert dense(image[:, :h * 10]).shape == (b, d)   # one window
        width += d
    assert net.fc(np.zeros((b, width))).shape == (b, 10)
    assert net.user_vectors(users, seqs).shape == (b, 20)
    assert net.Q_prime.weight.shape == (ITEMS, 20)
    assert net.Q.weight.shape == (ITEMS + 1, 10)       # + padding row
    assert net(users, seqs, np.zeros((b, 2))).shape == (b, 2)


@pytest.mark.parametrize('d, d_prime', [(16, 4), (0, 4), (16, 0)])
def test_conv2d_layer_shapes(d, d_prime):
    net = Caser(10, USERS, ITEMS, L=5, d=d, d_prime=d_prime, conv='conv2d')
    net.initialize()
    emb = np.expand_dims(net.Q(np.ones((9, 5), dtype='int32')), 1)
    assert emb.shape == (9, 1, 5, 10)
    if d_prime:
        assert net.conv_v(emb).shape == (9, d_prime, 1, 10)
    for h, conv in enumerate(net.conv_h, start=1):
        assert conv(emb).shape == (9, d, 5 - h + 1, 1)


@pytest.mark.parametrize('hybridize', [False, True])
def test_dense_equals_conv2d_with_the_same_filters(hybridize):
    rng = onp.random.default_rng(4)
    conv = make_net(conv='conv2d')
    dense = make_net(conv='dense')
    for name in ['P', 'Q', 'Q_prime', 'b']:
        getattr(dense, name).weight.set_data(
            getattr(conv, name).weight.data())
    d_prime = conv.conv_v.weight.shape[0]
    dense.conv_v.weight.set_data(conv.conv_v.weight.data().reshape(
        d_prime, L))
    dense.conv_v.bias.set_data(conv.conv_v.bias.data())
    for c, f in zip(conv.conv_h, dense.conv_h):
        f.weight.set_data(c.weight.data().reshape(f.weight.shape))
        f.bias.set_data(c.bias.data())
    # the vertical features come out as (k, d') instead of (d', k)
    w = conv.fc.weight.data().asnumpy()
    order = onp.arange(d_prime * K).reshape(d_prime, K).T.ravel()
    w[:, :d_prime * K] = w[:, order]
    dense.fc.weight.set_data(np.array(w))
    dense.fc.bias.set_data(conv.fc.bias.data())
    if hybridize:
        conv.hybridize()
        dense.hybridize()
    users, seqs = batch(6, rng)
    items = np.array(rng.integers(0, ITEMS, (6, 4)))
    onp.testing.assert_allclose(
        dense(np.array(users), np.array(seqs), items).asnumpy(),
        conv(np.array(users), np.array(seqs), items).asnumpy(),
        rtol=1e-5, atol=1e-6)


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
    ({'conv': 'fft'}, "conv must be 'dense' or 'conv2d'"),
])
def test_bad_arguments(kwargs, message):
    args = {'num_factors': 4, 'num_users': 3, 'num_items': 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        Caser(**args)
