"""Tests of the tied output (RecBole's Caser), ``AllItemScores``, the
``recbole`` initialisation and the ``prefixes`` windows."""
import mxnet as mx
import numpy as onp
import pandas as pd
import pytest
from mxnet import autograd, np
from test_model import ITEMS, batch, make_net, reference_vectors

from caser_gluon import data as data_lib
from caser_gluon.config import ModelConfig
from caser_gluon.zoo import build_model


def tied_reference(net, users, seqs):
    """relu(W2 [z, p_u] + b2) @ Q[:num_items]^T in NumPy, (b, num_items)."""
    x = reference_vectors(net, users, seqs)
    w2 = net.out_proj.weight.data().asnumpy()
    b2 = net.out_proj.bias.data().asnumpy()
    h = onp.maximum(x @ w2.T + b2, 0)
    Q = net.Q.weight.data().asnumpy()[:ITEMS]
    return h @ Q.T


@pytest.mark.parametrize('conv', ['dense', 'conv2d'])
@pytest.mark.parametrize('hybridize', [False, True])
def test_tied_scores_equal_numpy_reference(hybridize, conv):
    rng = onp.random.default_rng(0)
    net = make_net(hybridize=hybridize, conv=conv, output='tied')
    assert net.Q_prime is None and net.b is None
    assert net.width == net.num_factors
    users, seqs = batch(6, rng)
    want = tied_reference(net, users, seqs)
    items = rng.integers(0, ITEMS, (6, 4))
    got = net(np.array(users), np.array(seqs), np.array(items)).asnumpy()
    onp.testing.assert_allclose(got, onp.take_along_axis(want, items, 1),
                                rtol=1e-4, atol=1e-5)
    all_scores = net.score_all(np.array(users), np.array(seqs)).asnumpy()
    onp.testing.assert_allclose(all_scores, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('output', ['separate', 'tied'])
@pytest.mark.parametrize('hybridize', [False, True])
def test_all_item_scores_equal_score_all(hybridize, output):
    rng = onp.random.default_rng(1)
    net = make_net(hybridize=hybridize, output=output)
    users, seqs = batch(5, rng)
    u, s = np.array(users), np.array(seqs)
    want = net.score_all(u, s).asnumpy()
    block = net.all_item_scores()
    assert block is net.all_item_scores()          # made once
    assert not block.collect_params().keys() - net.collect_params().keys()
    onp.testing.assert_allclose(block(u, s).asnumpy(), want, rtol=1e-5,
                                atol=1e-6)


def test_all_item_scores_gradients_equal_score_all():
    rng = onp.random.default_rng(2)
    net = make_net(hybridize=True, output='tied')
    users, seqs = batch(4, rng)
    u, s = np.array(users), np.array(seqs)
    grads = []
    for score in (net.all_item_scores(), net.score_all):
        with autograd.record():
            loss = (score(u, s) ** 2).sum()
        loss.backward()
        grads.append({name: p.grad().asnumpy().copy()
                      for name, p in net.collect_params().items()})
    for name, g in grads[0].items():
        onp.testing.assert_allclose(g, grads[1][name], rtol=1e-4, atol=1e-6,
                                    err_msg=name)


def test_tied_output_needs_the_sequence():
    with pytest.raises(ValueError, match='output'):
        make_net(output='tied', use_seq=False)
    with pytest.raises(ValueError, match='output'):
        make_net(output='shared')


def test_recbole_init():
    k = 50
    net = build_model(ModelConfig(num_factors=k, init='recbole',
                                  output='tied'),
                      num_users=400, num_items=600, devices=[mx.cpu()])
    for name in ('P', 'Q'):
        std = float(getattr(net, name).weight.data().asnumpy().std())
        assert abs(std - 1 / k) < 0.1 / k
    intent = net.intent
    for weight, bias in [(intent.fc_weight, intent.fc_bias),
                         (net.out_proj.weight, net.out_proj.bias)]:
        fan_out, fan_in = weight.shape
        std = float(weight.data().asnumpy().std())
        assert abs(std - (2 / (fan_in + fan_out)) ** 0.5) < 0.1 * std
        assert not bias.data().asnumpy().any()
    bound = 5 ** -0.5                      # convolutions: as the paper's
    values = intent.conv_v_weight.data().asnumpy()
    assert 0.5 * bound < abs(values).max() <= bound


def make_dataset(histories, L, *, windows, targets=1, num_items=20):
    users = onp.concatenate([[u] * len(h) for u, h in enumerate(histories)])
    items = onp.concatenate(histories)
    _, _, candidates = data_lib.load_implicit(
        pd.DataFrame({'u': users + 1, 'i': items + 1}), len(histories),
        num_items)
    return data_lib.SeqDataset(users, items, L, len(histories), num_items,
                               candidates, targets=targets, windows=windows)


def prefix_reference(histories, L, T, pad):
    """Every prefix of each history with >= 1 input item, by loops (a
    history of T items: one window of padding, as the sliding ones)."""
    rows = []
    for u, h in enumerate(histories):
        # latest window first
        for end in range(len(h), T, -1) if len(h) > T else [T]:
            inputs = ([pad] * L + h[:end - T])[-L:]
            rows.append((u, inputs, h[end - T:end]))
    return rows


def test_prefix_windows_of_the_chapter_example():
    ds = make_dataset([list(range(8))], L=5, windows='prefixes')
    P = ds.pad
    onp.testing.assert_array_equal(ds.seq_items, [
        [2, 3, 4, 5, 6], [1, 2, 3, 4, 5], [0, 1, 2, 3, 4], [P, 0, 1, 2, 3],
        [P, P, 0, 1, 2], [P, P, P, 0, 1], [P, P, P, P, 0]])
    onp.testing.assert_array_equal(ds.seq_tgt[:, 0], [7, 6, 5, 4, 3, 2, 1])
    onp.testing.assert_array_equal(ds.test_seq[0], [3, 4, 5, 6, 7])


@pytest.mark.parametrize('L, T', [(3, 1), (4, 2), (1, 1)])
def test_prefix_windows_equal_reference(L, T):
    rng = onp.random.default_rng(L + T)
    histories = [rng.permutation(20)[:n].tolist() for n in (2, 3, 7, 12)]
    ds = make_dataset(histories, L, windows='prefixes', targets=T)
    want = prefix_reference(histories, L, T, ds.pad)
    assert len(ds) == len(want)
    onp.testing.assert_array_equal(ds.seq_users, [u for u, _, _ in want])
    onp.testing.assert_array_equal(ds.seq_items, [s for _, s, _ in want])
    onp.testing.assert_array_equal(ds.seq_tgt, [t for _, _, t in want])


def test_sliding_windows_are_the_default():
    histories = [list(range(8)), [3, 4]]
    default = make_dataset(histories, 5, windows='sliding')
    assert default.windows == 'sliding' and len(default) == 3 + 1
    with pytest.raises(data_lib.DataError, match='windows'):
        make_dataset(histories, 5, windows='every')
