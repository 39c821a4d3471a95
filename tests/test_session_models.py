"""Tests of caser_gluon.session_models: GRU4Rec and SASRec.

Each model against a NumPy reference of its paper's equations (weights
copied from the block), in both hybridize modes, plus a planted sequential
rule that the models must learn better than popularity.
"""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, ndarray, np, npx

from caser_gluon.session_models import GRU4Rec, SASRec

# the models ignore user_id, which a hybridized block reports
pytestmark = pytest.mark.filterwarnings(
    'ignore:The 0-th input to HybridBlock is not used')

K, USERS, ITEMS, L = 8, 5, 30, 6
STEPS = 100          # Adam steps in the planted-rule test


def randomize(net, rng, scale=0.5):
    """Every parameter drawn from N(0, scale), layer norms included."""
    for p in net.collect_params().values():
        p.set_data(np.array(rng.normal(0, scale, p.shape)
                            .astype(onp.float32)))


def make_net(cls, rng, *, hybridize=False, **kwargs):
    net = cls(K, USERS, ITEMS, L=L, **kwargs)
    net.initialize()
    randomize(net, rng)
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=False)
    return net


def contexts(size, rng):
    """Users and left-padded sequences (ITEMS is the padding id)."""
    users = rng.integers(0, USERS, size)
    seqs = rng.integers(0, ITEMS, (size, L))
    pads = rng.integers(0, L, size)              # the last item is real
    seqs[onp.arange(L) < pads[:, None]] = ITEMS
    return users, seqs


def reference_scores(net, x, items):
    """``x . Q'_i + b_i`` for (b, K) items, from the context vectors."""
    Qp = net.Q_prime.weight.data().asnumpy()
    b = net.b.weight.data().asnumpy()[:, 0]
    return onp.einsum('bk,bnk->bn', x, Qp[items]) + b[items]


def weight(block, name):
    return getattr(block, name).data().asnumpy()


# ---------------------------------------------------------------------------
# GRU4Rec
# ---------------------------------------------------------------------------

def sigmoid(x):
    return 1 / (1 + onp.exp(-x))


def gru_reference(net, seqs):
    """The GRU equations, one step at a time; MXNet's gates are r, z, n.

    r = s(W_ir x + b_ir + W_hr h + b_hr), z = s(... z ...),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h = (1 - z) n + z h.
    """
    inputs = net.Q.weight.data().asnumpy()[seqs]           # (b, L, k)
    H = net.hidden
    for layer in range(net.num_layers):
        Wi, Wh, bi, bh = (weight(net.gru, f'l{layer}_{name}') for name in
                          ['i2h_weight', 'h2h_weight', 'i2h_bias',
                           'h2h_bias'])
        h, outputs = onp.zeros((len(seqs), H)), []
        for t in range(inputs.shape[1]):
            gi, gh = inputs[:, t] @ Wi.T + bi, h @ Wh.T + bh
            r = sigmoid(gi[:, :H] + gh[:, :H])
            z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = onp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
            outputs.append(h)
        inputs = onp.stack(outputs, axis=1)
    return h @ weight(net.proj, 'weight').T + weight(net.proj, 'bias')


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('num_layers, hidden', [(1, None), (2, 5)])
def test_gru4rec_equals_numpy_reference(hybridize, num_layers, hidden):
    rng = onp.random.default_rng(0)
    net = make_net(GRU4Rec, rng, hybridize=hybridize, hidden=hidden,
                   num_layers=num_layers, dropout=0.3)
    users, seqs = contexts(7, rng)
    items = rng.integers(0, ITEMS, (7, 4))
    with autograd.predict_mode():
        got = net(np.array(users), np.array(seqs), np.array(items))
    assert got.shape == (7, 4)
    want = reference_scores(net, gru_reference(net, seqs), items)
    onp.testing.assert_allclose(got.asnumpy(), want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# SASRec
# ---------------------------------------------------------------------------

def layer_norm(x, block):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return ((x - mean) / onp.sqrt(var + 1e-5) * weight(block, 'gamma')
            + weight(block, 'beta'))


def dense(x, block):
    return x @ weight(block, 'weight').T + weight(block, 'bias')


def sasrec_reference(net, seqs):
    """Every position's output, with loops over heads and positions."""
    k = net.num_factors
    valid = seqs != net.pad
    x = (net.Q.weight.data().asnumpy()[seqs] * onp.sqrt(k)
         + net.positions.weight.data().asnumpy()[:L])
    x = x * valid[..., None]
    for blk in net.blocks:
        h = layer_norm(x, blk.norm1)
        q, kk, v = dense(h, blk.query), dense(h, blk.key), dense(h, blk.value)
        dh = k // blk.num_heads
        att = onp.zeros_like(x)
        for b in range(len(seqs)):
            for i in range(L):
                # earlier real items, and position i itself
                keys = [j for j in range(i + 1) if valid[b, j] or j == i]
                for hd in range(blk.num_heads):
                    c = slice(hd * dh, (hd + 1) * dh)
                    logits = kk[b, keys, c] @ q[b, i, c] / onp.sqrt(dh)
                    w = onp.exp(logits - logits.max())
                    att[b, i, c] = (w / w.sum()) @ v[b, keys, c]
        x = x + att
        f = dense(onp.maximum(dense(layer_norm(x, blk.norm2), blk.ffn1), 0),
                  blk.ffn2)
        x = (x + f) * valid[..., None]
    return x


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('num_blocks, num_heads', [(1, 1), (2, 2)])
def test_sasrec_equals_numpy_reference(hybridize, num_blocks, num_heads):
    rng = onp.random.default_rng(1)
    net = make_net(SASRec, rng, hybridize=hybridize, num_blocks=num_blocks,
                   num_heads=num_heads, dropout=0.3)
    users, seqs = contexts(6, rng)
    items = rng.integers(0, ITEMS, (6, 3))
    with autograd.predict_mode():
        got = net(np.array(users), np.array(seqs), np.array(items))
        states = net.hidden_states(ndarray, np.array(seqs)).asnumpy()
    want_states = sasrec_reference(net, seqs)
    onp.testing.assert_allclose(states, want_states, rtol=1e-4, atol=1e-4)
    x = layer_norm(want_states[:, -1], net.norm)
    assert got.shape == (6, 3)
    onp.testing.assert_allclose(got.asnumpy(), reference_scores(net, x, items),
                                rtol=1e-4, atol=1e-4)


def test_sasrec_is_causal_and_ignores_padding():
    """A later item, or the padding's embedding, changes no earlier output.

    A brute-force check of the mask: position ``t``'s output may depend on
    the real items at ``0..t`` only.
    """
    rng = onp.random.default_rng(2)
    net = make_net(SASRec, rng, num_blocks=2, num_heads=2)
    _, seqs = contexts(8, rng)
    seqs[:, :2] = ITEMS                             # two padding positions
    with autograd.predict_mode():
        before = net.hidden_states(ndarray, np.array(seqs)).asnumpy()
        for t in range(2, L):
            changed = seqs.copy()
            changed[:, t] = (changed[:, t] + 1) % ITEMS
            after = net.hidden_states(ndarray, np.array(changed)).asnumpy()
            onp.testing.assert_allclose(after[:, :t], before[:, :t],
                                        atol=1e-6)
            assert onp.abs(after[:, t] - before[:, t]).max() > 1e-3
        pad_row = net.Q.weight.data()[ITEMS]
        net.Q.weight.data()[ITEMS] = pad_row + 1.0
        after = net.hidden_states(ndarray, np.array(seqs)).asnumpy()
    onp.testing.assert_allclose(after, before, atol=1e-6)
    assert onp.abs(before[:, :2]).max() == 0        # padding passes nothing


# ---------------------------------------------------------------------------
# Both models
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('cls', [GRU4Rec, SASRec])
def test_shapes_and_hybridize_agree(cls):
    """Same scores with and without hybridize, for 1 and K items per row,
    and ``score_all`` equal to scoring every item."""
    rng = onp.random.default_rng(3)
    net = make_net(cls, rng)
    users, seqs = contexts(5, rng)
    one, many = rng.integers(0, ITEMS, 5), rng.integers(0, ITEMS, (5, 3))
    args = np.array(users), np.array(seqs)
    with autograd.predict_mode():
        eager = [net(*args, np.array(i)).asnumpy() for i in (one, many)]
        every = net(*args, np.array(onp.tile(onp.arange(ITEMS), (5, 1))))
        onp.testing.assert_allclose(net.score_all(*args).asnumpy(),
                                    every.asnumpy(), rtol=1e-5, atol=1e-5)
        net.hybridize(static_alloc=True, static_shape=False)
        hybrid = [net(*args, np.array(i)).asnumpy() for i in (one, many)]
    assert eager[0].shape == (5,) and eager[1].shape == (5, 3)
    assert net.use_user is False and net.width == K
    for e, h in zip(eager, hybrid):
        onp.testing.assert_allclose(e, h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cls, kwargs', [
    (GRU4Rec, {'hidden': 0}), (GRU4Rec, {'dropout': 1.0}),
    (SASRec, {'num_heads': 3}), (SASRec, {'L': 0})])
def test_bad_sizes_are_one_line_errors(cls, kwargs):
    with pytest.raises(ValueError, match='hidden|dropout|num_heads|L must'):
        cls(K, USERS, ITEMS, **{'L': L, **kwargs})


def planted_rule_data(rng, *, n, size, skew=1.0):
    """Contexts of the rule ``i -> (i + stride) % n``, stride 1 or 2.

    The next item depends on the last two items (their difference is the
    stride), so a model that reads only the last item gets at most half of
    the top-1 hits. The last items follow a Zipf-like law (exponent
    ``skew``), so popularity is a baseline better than chance. Contexts are
    left-padded at random, keeping at least two real items.
    """
    p = 1 / onp.arange(1, n + 1) ** skew
    last = rng.choice(n, size, p=p / p.sum())
    strides = rng.integers(1, 3, size)
    seqs = (last[:, None] + strides[:, None] * onp.arange(-L + 1, 2)) % n
    pads = rng.integers(0, L - 1, size)
    seqs[:, :L][onp.arange(L) < pads[:, None]] = n
    return seqs[:, :L], seqs[:, L]


def train_bpr(net, seqs, targets, rng, *, n, steps, batch_size=128,
              num_negatives=8, lr=0.01):
    """``steps`` Adam steps of BPR, uniform negatives (never the target)."""
    trainer = gluon.Trainer(net.collect_params(), 'adam',
                            {'learning_rate': lr})
    users = onp.zeros(len(seqs), onp.int32)
    for _ in range(steps):
        idx = rng.integers(0, len(seqs), batch_size)
        neg = (targets[idx, None]
               + rng.integers(1, n, (batch_size, num_negatives))) % n
        items = onp.concatenate([targets[idx, None], neg], axis=1)
        with autograd.record():
            s = net(np.array(users[idx]), np.array(seqs[idx]),
                    np.array(items))                       # (b, 1 + N)
            loss = npx.activation(s[:, 1:] - s[:, :1], act_type='softrelu')
        loss.backward()
        trainer.step(batch_size)


@pytest.mark.parametrize('cls', [GRU4Rec, SASRec])
def test_learns_planted_rule_better_than_popularity(cls, seed):
    """Top-1 hit rate on fresh contexts, against the most popular item
    and a first-order Markov chain (it sees the last item only)."""
    n = 40
    rng = onp.random.default_rng(seed)
    seqs, targets = planted_rule_data(rng, n=n, size=2000)
    net = cls(16, 1, n, L=L, dropout=0.1)
    net.initialize(init=mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=False)
    train_bpr(net, seqs, targets, rng, n=n, steps=STEPS)
    test_seqs, test_targets = planted_rule_data(rng, n=n, size=500)
    with autograd.predict_mode():
        scores = net.score_all(np.zeros(500), np.array(test_seqs)).asnumpy()
    hit = (scores.argmax(axis=1) == test_targets).mean()
    popular = onp.bincount(targets, minlength=n).argmax()
    pop_hit = (test_targets == popular).mean()
    # a first-order Markov chain: the most frequent next item of each item
    pairs = onp.zeros((n + 1, n))
    onp.add.at(pairs, (seqs[:, -1], targets), 1)
    markov_hit = (pairs.argmax(axis=1)[test_seqs[:, -1]]
                  == test_targets).mean()
    assert 0.05 < pop_hit < 0.3 and pop_hit < markov_hit < 0.7
    assert hit > markov_hit + 0.2, (hit, markov_hit, pop_hit)
