"""Tests of caser_gluon.model.Caser against a NumPy reference."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from caser_gluon import fpu, fused
from caser_gluon.model import Caser
from caser_gluon.train import masked_scorer

K, USERS, ITEMS, L = 6, 7, 30, 4
#: the compiled form, where this machine builds it (tests/test_fused.py)
FUSED = pytest.param('fused', marks=pytest.mark.skipif(
    not fused.load(), reason='no fused operator here'))


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


def conv_params(net):
    """The convolution and dense-layer parameters of either form, as NumPy.

    Returns ``w_v`` (d', L), ``b_v`` (d',), ``w_h``/``b_h`` lists of
    (d, h, k)/(d,) per height, and ``W_fc`` (k, d' k + L d) whose first
    d' k columns read vertical filter c at column j as column c k + j.
    """
    if net.conv == 'conv2d':
        v, fc = net.conv_v, net.fc
        return {
            'w_v': None if v is None else v.weight.data().asnumpy(),
            'b_v': None if v is None else v.bias.data().asnumpy(),
            'w_h': [c.weight.data().asnumpy() for c in net.conv_h],
            'b_h': [c.bias.data().asnumpy() for c in net.conv_h],
            'W_fc': fc.weight.data().asnumpy(),
            'b_fc': fc.bias.data().asnumpy()}
    f = net.intent
    heights = range(1, net.L + 1) if net.d else []

    def get(name):
        return getattr(f, name).data().asnumpy()
    return {'w_v': get('conv_v_weight') if net.d_prime else None,
            'b_v': get('conv_v_bias') if net.d_prime else None,
            'w_h': [get(f'conv_h{h}_weight') for h in heights],
            'b_h': [get(f'conv_h{h}_bias') for h in heights],
            'W_fc': get('fc_weight'), 'b_fc': get('fc_bias')}


def reference_vectors(net, users, seqs, masks=None):
    """Caser's user vector computed with loops over the paper's formulas.

    ``masks``: dropout masks of ``net.mask_widths`` (rows of the batch),
    multiplied into the image or the features' blocks.
    """
    c = conv_params(net) if net.use_seq else None
    out = []
    for row, (u, seq) in enumerate(zip(users, seqs)):
        feats, parts = [], []
        if net.use_user:
            parts.append(net.P.weight.data().asnumpy()[u])
        if not net.use_seq:
            out.append(parts[0])
            continue
        E = net.Q.weight.data().asnumpy()[seq]            # (L, k)
        if masks is not None and net.intent.dropout_on == 'image':
            E = E * masks[0][row].reshape(L, K)
        if c['w_v'] is not None:
            w = c['w_v'].reshape(-1, L)                   # (d', L)
            v = onp.einsum('cl,lk->ck', w, E) + c['b_v'][:, None]
            feats.append(v.ravel())                       # (d' k,)
        for h, (w, b) in enumerate(zip(c['w_h'], c['b_h']), start=1):
            w = w.reshape(-1, h, K)                       # (d, h, k)
            acts = [onp.maximum((w * E[t:t + h]).sum((1, 2)) + b, 0)
                    for t in range(L - h + 1)]
            feats.append(onp.max(acts, axis=0))
        if masks is not None and net.intent.dropout_on == 'features':
            row_masks = [m[row] for m in masks]
            if net.intent.fused:               # the heights' masks joined
                row_masks = row_masks[:-1] + onp.split(row_masks[-1], L)
            feats = [f * m for f, m in zip(feats, row_masks)]
        o = onp.concatenate(feats)
        z = onp.maximum(c['W_fc'] @ o + c['b_fc'], 0)
        out.append(onp.concatenate([z] + parts))
    return onp.array(out)


def reference_scores(net, users, seqs, items, masks=None):
    x = reference_vectors(net, users, seqs, masks)
    Qp = net.Q_prime.weight.data().asnumpy()
    b = net.b.weight.data().asnumpy()[:, 0]
    items = onp.asarray(items)
    flat = items.reshape(len(users), -1)
    s = onp.einsum('bk,bnk->bn', x, Qp[flat]) + b[flat]
    return s.reshape(items.shape)


@pytest.mark.parametrize('conv', ['dense', FUSED, 'conv2d'])
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
    assert net.conv_v is None and net.conv_h is None and net.fc is None
    prefix = net.intent.prefix
    shapes = {name[len(prefix):]: p.shape
              for name, p in net.intent.collect_params().items()}
    expected = {'fc_weight': (10, d_prime * 10 + d * 5), 'fc_bias': (10,)}
    if d_prime:
        expected.update(conv_v_weight=(d_prime, 5), conv_v_bias=(d_prime,))
    for h in range(1, 6) if d else []:
        expected.update({f'conv_h{h}_weight': (d, h * 10),
                         f'conv_h{h}_bias': (d,)})
    assert shapes == expected
    assert net.intent(emb.reshape(b, 50)).shape == (b, 10)
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


def copy_conv2d_into_dense(conv, dense):
    """Give ``dense`` (conv='dense') the parameters of ``conv`` (conv2d)."""
    for name in ['P', 'Q', 'Q_prime', 'b']:
        getattr(dense, name).weight.set_data(
            getattr(conv, name).weight.data())
    f = dense.intent
    d_prime = conv.conv_v.weight.shape[0]
    f.conv_v_weight.set_data(conv.conv_v.weight.data().reshape(d_prime, L))
    f.conv_v_bias.set_data(conv.conv_v.bias.data())
    for h, layer in enumerate(conv.conv_h, start=1):
        weight = getattr(f, f'conv_h{h}_weight')
        weight.set_data(layer.weight.data().reshape(weight.shape))
        getattr(f, f'conv_h{h}_bias').set_data(layer.bias.data())
    # same column order: vertical filter c at column j, then the heights
    f.fc_weight.set_data(conv.fc.weight.data())
    f.fc_bias.set_data(conv.fc.bias.data())


@pytest.mark.parametrize('hybridize', [False, True])
def test_dense_equals_conv2d_with_the_same_filters(hybridize):
    rng = onp.random.default_rng(4)
    conv = make_net(conv='conv2d')
    dense = make_net(conv='dense')
    copy_conv2d_into_dense(conv, dense)
    if hybridize:
        conv.hybridize()
        dense.hybridize()
    users, seqs = batch(6, rng)
    items = np.array(rng.integers(0, ITEMS, (6, 4)))
    onp.testing.assert_allclose(
        dense(np.array(users), np.array(seqs), items).asnumpy(),
        conv(np.array(users), np.array(seqs), items).asnumpy(),
        rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('masked', [False, True])
def test_dense_and_conv2d_gradients_agree(masked):
    """The folded vertical weight (no dropout) and the Kronecker one (with
    masks, here all ones) back-propagate as the two layers do."""
    rng = onp.random.default_rng(5)
    conv = make_net(conv='conv2d', hybridize=True)
    dense = Caser(K, USERS, ITEMS, L=L, d=3, d_prime=2,
                  drop_ratio=0.5 if masked else 0.0)
    dense.initialize(init=mx.init.Normal(0.5))
    dense.hybridize()
    copy_conv2d_into_dense(conv, dense)
    scorer = masked_scorer(dense)
    assert (scorer is not None) == masked
    # no item twice in a row: the chapter's np.max over tied windows
    # passes the gradient to each of them (MXNet 1.9), np.maximum to one
    users = np.array(rng.integers(0, USERS, 16))
    seqs = np.array(onp.stack([rng.permutation(ITEMS + 1)[:L]
                               for _ in range(16)]))
    items = np.array(rng.integers(0, ITEMS, (16, 2)))
    ones = [np.ones((16, w)) for w in dense.mask_widths]
    for net in (conv, dense):
        with mx.autograd.record():
            scores = (scorer(users, seqs, items, *ones)
                      if net is dense and masked else net(users, seqs, items))
            loss = mx.npx.activation(scores[:, 1] - scores[:, 0],
                                     act_type='softrelu').sum()
        loss.backward()

    def grad(param):
        return param.grad().asnumpy()
    for name in ['P', 'Q', 'Q_prime', 'b']:
        onp.testing.assert_allclose(
            grad(getattr(dense, name).weight),
            grad(getattr(conv, name).weight), rtol=1e-4, atol=1e-7)
    f = dense.intent
    pairs = [(f.conv_v_weight, conv.conv_v.weight),
             (f.conv_v_bias, conv.conv_v.bias),
             (f.fc_weight, conv.fc.weight), (f.fc_bias, conv.fc.bias)]
    for h, layer in enumerate(conv.conv_h, start=1):
        pairs += [(getattr(f, f'conv_h{h}_weight'), layer.weight),
                  (getattr(f, f'conv_h{h}_bias'), layer.bias)]
    for ours, chapter in pairs:
        onp.testing.assert_allclose(
            grad(ours), grad(chapter).reshape(ours.shape),
            rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('conv', ['dense', FUSED])
@pytest.mark.parametrize('where', ['features', 'image'])
@pytest.mark.parametrize('hybridize', [False, True])
def test_given_masks_act_as_dropout(where, hybridize, conv):
    rng = onp.random.default_rng(9)
    net = Caser(K, USERS, ITEMS, L=L, d=3, d_prime=2, drop_ratio=0.5,
                dropout_on=where, conv=conv)
    net.initialize(init=mx.init.Normal(0.5))
    if hybridize:
        net.hybridize()
    scorer = masked_scorer(net)
    users, seqs = batch(8, rng)
    items = rng.integers(0, ITEMS, (8, 3))
    masks = net.draw_masks(rng, 8)
    assert [m.shape for m in masks] == [(8, w) for w in net.mask_widths]
    args = [np.array(a) for a in (users, seqs, items, *masks)]
    with mx.autograd.train_mode():
        got = scorer(*args).asnumpy()
    onp.testing.assert_allclose(
        got, reference_scores(net, users, seqs, items, masks),
        rtol=1e-4, atol=1e-5)
    every = onp.tile(onp.arange(ITEMS), (8, 1))      # the full softmax's
    with mx.autograd.train_mode():
        got = net.all_item_scores()(*args[:2], *args[3:]).asnumpy()
    onp.testing.assert_allclose(
        got, reference_scores(net, users, seqs, every, masks),
        rtol=1e-4, atol=1e-5)
    with mx.autograd.predict_mode():      # the model's own call: no masks
        onp.testing.assert_allclose(
            net(*args[:3]).asnumpy(), reference_scores(net, users, seqs, items),
            rtol=1e-4, atol=1e-5)


def test_drawn_masks_keep_one_minus_p_rescaled():
    net = Caser(K, USERS, ITEMS, L=L, d=3, d_prime=2, drop_ratio=0.25,
                conv='dense')
    assert net.mask_widths == (2 * K, 3, 3, 3, 3)    # vertical, heights
    masks = net.draw_masks(onp.random.default_rng(0), 20000)
    again = net.draw_masks(onp.random.default_rng(0), 20000)
    for mask, same, width in zip(masks, again, net.mask_widths):
        assert mask.shape == (20000, width) and mask.dtype == onp.float32
        assert set(onp.unique(mask)) == {0, onp.float32(1 / 0.75)}
        assert abs((mask != 0).mean() - 0.75) < 0.01
        assert abs(mask.mean() - 1) < 0.01            # unbiased
        onp.testing.assert_array_equal(mask, same)
    image = Caser(K, USERS, ITEMS, L=L, drop_ratio=0.25, dropout_on='image')
    assert image.mask_widths == (L * K,)
    assert Caser(K, USERS, ITEMS, L=L, d=3, d_prime=0, drop_ratio=0.25,
                 conv='dense').mask_widths == (3,) * L
    for kwargs in ({'drop_ratio': 0.0}, {'conv': 'conv2d'}):
        net = Caser(K, USERS, ITEMS, L=L, **kwargs)
        assert net.mask_widths == () and net.draw_masks(None, 4) == []
        assert masked_scorer(net) is None


@pytest.mark.parametrize('hybridize', [False, True])
def test_dense_dropout_acts_on_the_image_while_training(hybridize):
    rng = onp.random.default_rng(6)
    net = Caser(K, USERS, ITEMS, L=L, d=3, d_prime=2, drop_ratio=0.5,
                dropout_on='image')
    net.initialize(init=mx.init.Normal(0.5))
    if hybridize:
        net.hybridize()
    users, seqs = batch(64, rng)
    ref = reference_vectors(net, users, seqs)
    args = (np.array(users), np.array(seqs))
    with mx.autograd.predict_mode():
        onp.testing.assert_allclose(net.user_vectors(*args).asnumpy(), ref,
                                    rtol=1e-4, atol=1e-5)
    image = net.Q(np.array(seqs)).reshape(64, L * K)
    with mx.autograd.train_mode():
        mx.random.seed(7)
        got = net.intent(image).asnumpy()
        mx.random.seed(7)
        kept = mx.npx.dropout(image, p=0.5).asnumpy() != 0
    # the same image entries dropped: z of the masked image, undropped
    masked = np.array(onp.where(kept, image.asnumpy() / 0.5, 0))
    net.intent.drop_ratio = 0
    with mx.autograd.predict_mode():
        want = net.intent(masked).asnumpy()
    assert 0.3 < kept.mean() < 0.7
    onp.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('hybridize', [False, True])
def test_feature_dropout_is_unbiased_where_image_dropout_is_not(hybridize):
    # identity activations: z is linear in the features, so dropping
    # features out (the chapter's) keeps z's mean; dropping image entries
    # out before the max-pooling does not
    rng = onp.random.default_rng(8)
    _, seqs = batch(1, rng)
    means = {}
    for where in ('features', 'image'):
        net = Caser(K, USERS, ITEMS, L=L, d=3, d_prime=2, drop_ratio=0.5,
                    ac_conv='identity', ac_fc='identity', dropout_on=where)
        net.initialize(init=mx.init.Normal(0.5))
        if hybridize:
            net.hybridize()
        image = net.Q(np.array(seqs)).reshape(1, L * K)
        with mx.autograd.predict_mode():
            clean = net.intent(image).asnumpy()[0]
        many = np.array(onp.repeat(image.asnumpy(), 4000, axis=0))
        mx.random.seed(3)
        with mx.autograd.train_mode():
            noisy = net.intent(many).asnumpy()
        means[where] = (abs(noisy.mean(axis=0) - clean).max()
                        / abs(clean).max())
        assert noisy.std(axis=0).max() > 0          # dropout did act
    assert means['features'] < 0.05 < means['image']


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
    ({'conv': 'fft'}, "conv must be one of"),
])
def test_bad_arguments(kwargs, message):
    args = {'num_factors': 4, 'num_users': 3, 'num_items': 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        Caser(**args)


# ---------------------------------------------------------------------------
# caser_gluon.fpu: flushing subnormals to zero
# ---------------------------------------------------------------------------

FPU_PROBE = '''
from caser_gluon import fpu
enabled = fpu.enable_flush_to_zero()
import numpy as onp
from mxnet import np, npx
npx.set_np()
tiny = np.full((3,), 1e-30, dtype='float32') * 1e-10   # an engine thread
print(enabled, fpu.flush_to_zero_enabled(),
      float(onp.float32(1e-30) * onp.float32(1e-10)),
      float(tiny.asnumpy().max()))
'''


@pytest.mark.skipif(fpu._libm() is None,
                    reason='FTZ/DAZ is set on x86-64 Linux with glibc only')
def test_flush_to_zero_flushes_subnormal_products():
    import subprocess
    import sys
    # 1e-30 * 1e-10 = 1e-40 is subnormal in float32 (below 1.18e-38): kept
    # here if mxnet was imported without the call ...
    if not fpu.flush_to_zero_enabled():
        assert onp.float32(1e-30) * onp.float32(1e-10) > 0
        tiny = np.full((3,), 1e-30, dtype='float32') * 1e-10
        assert float(tiny.asnumpy().max()) == pytest.approx(1e-40)
    # ... and flushed in a fresh interpreter that calls it before mxnet
    out = subprocess.run([sys.executable, '-c', FPU_PROBE],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ['True', 'True', '0.0', '0.0']


def test_flush_to_zero_is_a_no_op_elsewhere(monkeypatch):
    monkeypatch.setattr(fpu.sys, 'platform', 'darwin')
    assert fpu.enable_flush_to_zero() is False
    assert fpu.read_mxcsr() is None and fpu.flush_to_zero_enabled() is False


def test_paper_init_follows_the_authors():
    from caser_gluon.config import ModelConfig
    from caser_gluon.zoo import build_model
    k = 50
    net = build_model(ModelConfig(num_factors=k, init='paper'),
                      num_users=400, num_items=600, devices=[mx.cpu()])
    std = {name: float(getattr(net, name).weight.data().asnumpy().std())
           for name in ('P', 'Q', 'Q_prime')}
    assert abs(std['P'] - 1 / k) < 0.1 / k
    assert abs(std['Q'] - 1 / k) < 0.1 / k
    assert abs(std['Q_prime'] - 0.5 / k) < 0.05 / k
    assert not net.b.weight.data().asnumpy().any()
    # layers: Uniform(+-1/sqrt(fan_in)), biases too
    intent = net.intent
    for name, fan_in in [('conv_v_weight', 5), ('conv_v_bias', 5),
                         ('fc_weight', 4 * k + 16 * 5)]:
        values = getattr(intent, name).data().asnumpy()
        bound = fan_in ** -0.5
        assert abs(values).max() <= bound
        assert abs(values).max() > 0.5 * bound
