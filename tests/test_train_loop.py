"""Behaviour of the training loops ("Training the Model" section).

No timings here: speed is measured by ``benchmarks/bench.py``.
"""
import mxnet as mx
import numpy as np
import pandas as pd
import pytest
from mxnet import npx

from caser_gluon import data as data_lib
from caser_gluon import losses
from caser_gluon import train as train_lib
from caser_gluon.config import ModelConfig
from caser_gluon.interactions import ItemSets
from caser_gluon.runtime import seed_epoch, set_seed
from caser_gluon.zoo import build_model

npx.set_np()


def _tiny_dataset(num_users=12, num_items=30, per_user=9, seed=0, L=5,
                  targets=1):
    """Each user a random history of ``per_user`` distinct items."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    items = np.concatenate([rng.choice(num_items, per_user, replace=False)
                            for _ in range(num_users)])
    candidates = ItemSets.from_pairs(users, items, num_users=num_users,
                                     num_items=num_items)
    return data_lib.SeqDataset(users, items, L, num_users, num_items,
                               candidates, targets=targets, seed=seed)


def _net(dataset, devices=None, hybridize=True, **sizes):
    config = ModelConfig(**{'num_factors': 8, 'L': dataset.L, 'd': 4,
                            'd_prime': 2, **sizes})
    return build_model(config, num_users=dataset.num_users,
                       num_items=dataset.num_items,
                       devices=list(devices or [mx.cpu()]),
                       hybridize=hybridize)


def _trainer(net, lr=0.04):
    return train_lib.make_trainer(net, lr=lr, wd=1e-5, optimizer='adam',
                                  kvstore='device')


def test_bpr_loss_matches_d2l_where_finite():
    from d2l import mxnet as d2l
    pos = mx.np.array([3.0, -1.0, 0.5, 0.0, -60.0, -200.0])
    neg = mx.np.array([1.0, 2.0, 0.5, 40.0, 60.0, 0.0])
    ours = losses.bpr_loss(pos, neg).asnumpy()
    theirs = np.array([d2l.BPRLoss()(pos[i:i + 1], neg[i:i + 1]).item()
                       for i in range(len(pos))])
    finite = np.isfinite(theirs)
    assert finite[:4].all() and not finite.all()
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5,
                               atol=1e-6)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours[~finite], (neg - pos).asnumpy()[~finite],
                               rtol=1e-5)


def test_hinge_and_bce_losses_by_hand():
    from d2l import mxnet as d2l
    pos = mx.np.array([[2.0, -1.0], [0.5, 0.0]])
    neg = mx.np.array([[1.5, 1.0], [-3.0, 0.0]])
    hinge = losses.LOSSES['hinge'](pos, neg).asnumpy()
    np.testing.assert_allclose(hinge, [0.5 + 3.0, 0.0 + 1.0])
    assert hinge.sum() == pytest.approx(float(d2l.HingeLossbRec()(pos,
                                                                  neg)))
    bpr = losses.LOSSES['bpr'](pos, neg).asnumpy()
    ref = np.log1p(np.exp(neg.asnumpy() - pos.asnumpy())).sum(axis=1)
    np.testing.assert_allclose(bpr, ref, rtol=1e-6)
    # BCE: every target against every negative, (2, 2) and (2, 3)
    neg3 = mx.np.array([[0.0, 1.0, -1.0], [2.0, -2.0, 0.5]])
    p, n = pos.asnumpy(), neg3.asnumpy()
    ref = np.log1p(np.exp(-p)).sum(1) + np.log1p(np.exp(n)).sum(1)
    np.testing.assert_allclose(losses.bce_loss(pos, neg3).asnumpy(), ref,
                               rtol=1e-6)
    far = losses.bce_loss(mx.np.array([[-500.0]]), mx.np.array([[500.0]]))
    assert far.item() == pytest.approx(1000.0)


def test_softmax_losses_by_hand():
    pos = np.array([[2.0, -1.0], [0.5, 0.0]])
    neg = np.array([[1.5, 1.0, -2.0], [-3.0, 0.0, 4.0]])
    got = losses.sampled_softmax_loss(mx.np.array(pos), mx.np.array(neg))
    ref = [sum(-p + np.log(np.exp(p) + np.exp(n).sum()) for p in row)
           for row, n in zip(pos, neg)]
    np.testing.assert_allclose(got.asnumpy(), ref, rtol=1e-5)
    logits = np.array([[0.1, 2.0, -1.0, 0.5], [3.0, 0.0, 0.0, -50.0]])
    targets = np.array([[1, 3], [3, 0]])
    got = losses.softmax_ce_loss(mx.np.array(logits),
                                 mx.np.array(targets, dtype='int32'))
    log_z = np.log(np.exp(logits).sum(axis=1))
    ref = [sum(log_z[b] - logits[b, t] for t in targets[b])
           for b in range(2)]
    np.testing.assert_allclose(got.asnumpy(), ref, rtol=1e-5)
    assert np.isfinite(got.asnumpy()).all()


def test_batches_cover_every_window_once_with_unseen_negatives():
    dataset = _tiny_dataset()
    rng = np.random.default_rng(1)
    batches = list(train_lib._batches(dataset, batch_size=7, rng=rng,
                                      num_negatives=1))
    assert [len(b[0]) for b in batches[:-1]] == [7] * (len(batches) - 1)
    users = np.concatenate([b[0] for b in batches])
    seqs = np.concatenate([b[1] for b in batches])
    items = np.concatenate([b[2] for b in batches])
    assert len(users) == len(dataset)
    assert items.shape == (len(dataset), 2) and items.dtype == np.int32
    # every window exactly once: compare sorted (user, seq, target) rows
    ours = np.column_stack([users, seqs, items[:, 0]])
    ref = np.column_stack([dataset.seq_users, dataset.seq_items,
                           dataset.seq_tgt[:, 0]])
    np.testing.assert_array_equal(np.unique(ours, axis=0),
                                  np.unique(ref, axis=0))
    seen = {(int(u), int(i)) for u, i in zip(dataset.seq_users,
                                             dataset.seq_tgt[:, 0])}
    assert all((int(u), int(i)) in seen for u, i in zip(users, items[:, 0]))
    assert not any((int(u), int(i)) in seen
                   for u, i in zip(users, items[:, 1]))


def test_batches_with_targets_and_negatives():
    dataset = _tiny_dataset(L=3, targets=2)
    batches = train_lib._batches(dataset, batch_size=5, num_negatives=3,
                                 rng=np.random.default_rng(0))
    users, _, items = next(batches)
    assert items.shape == (5, 5)        # T = 2 targets, then 3 negatives
    history = {u: set(dataset.seq_tgt[dataset.seq_users == u].ravel()) |
               set(dataset.seq_items[dataset.seq_users == u].ravel())
               for u in np.unique(users)}
    for u, row in zip(users, items):
        assert not set(row[2:].tolist()) & history[u]


@pytest.mark.parametrize('hybridize', [False, True])
def test_loss_falls_and_is_mean_per_example(hybridize):
    set_seed(0)
    dataset = _tiny_dataset(num_users=40, num_items=60, per_user=15)
    devices = [mx.cpu()]
    net = _net(dataset, devices, hybridize=hybridize, num_factors=10,
               d=16, d_prime=4)
    trainer = _trainer(net, lr=0.05)
    rng = np.random.default_rng(0)
    epochs = [train_lib.train_epoch(net, dataset, trainer, batch_size=64,
                                    devices=devices, rng=rng, loss='bpr')
              for _ in range(2)]
    # the first epoch starts at ln 2 per example (scores near zero)
    assert 0.3 < epochs[0][0] < 0.75
    assert epochs[1][0] < epochs[0][0]
    assert all(seconds > 0 for _, seconds in epochs)


def test_fit_records_calls_back_and_evaluates():
    set_seed(0)
    dataset = _tiny_dataset()
    devices = [mx.cpu(0), mx.cpu(1)]
    net = _net(dataset, devices)
    trainer = _trainer(net)
    seen, evaluated = [], []

    def evaluate(model):
        evaluated.append(model)
        return {'hit_rate': 0.25}
    history = train_lib.fit(net, dataset, trainer, num_epochs=3,
                            batch_size=16, devices=devices, seed=0,
                            loss='bpr', quiet=True, evaluate=evaluate,
                            on_epoch=seen.append, start_epoch=2)
    assert [r['epoch'] for r in history] == [2, 3]
    assert seen == history and evaluated == [net, net]
    for r in history:
        assert r['train_seconds'] > 0 and r['eval_seconds'] >= 0
        assert r['hit_rate'] == 0.25
        assert r['examples_per_sec'] == pytest.approx(
            len(dataset) / r['train_seconds'])


def test_fit_is_seeded_per_epoch():
    """Epoch ``e`` draws from ``(seed, e)``: a run started at epoch 2 from
    epoch 1's parameters ends where an uninterrupted run does."""
    dataset = _tiny_dataset()
    devices = [mx.cpu()]
    runs = []
    for split in (False, True):
        set_seed(0)
        net = _net(dataset, devices, drop_ratio=0.3)
        trainer = _trainer(net)
        kwargs = {'batch_size': 8, 'devices': devices, 'seed': 4,
                  'loss': 'bpr', 'quiet': True}
        if split:
            history = train_lib.fit(net, dataset, trainer, num_epochs=1,
                                    **kwargs)
            history += train_lib.fit(net, dataset, trainer, num_epochs=2,
                                     start_epoch=2, **kwargs)
        else:
            history = train_lib.fit(net, dataset, trainer, num_epochs=2,
                                    **kwargs)
        runs.append([r['train_loss'] for r in history])
    assert runs[0] == runs[1]
    a = seed_epoch(4, 2).integers(0, 10 ** 9, 4)
    assert (a == seed_epoch(4, 2).integers(0, 10 ** 9, 4)).all()
    assert not (a == seed_epoch(4, 3).integers(0, 10 ** 9, 4)).all()


def test_nan_loss_stops_with_epoch_and_batch():
    dataset = _tiny_dataset(num_users=3, num_items=10, per_user=6, L=2)
    devices = [mx.cpu()]
    net = _net(dataset, devices, d=2, d_prime=1)
    trainer = _trainer(net, lr=0.01)
    net.b.weight.set_data(mx.np.full((10, 1), np.nan))
    with pytest.raises(FloatingPointError, match='epoch 1, batch 1: the '
                                                 'loss is nan'):
        train_lib.fit(net, dataset, trainer, num_epochs=2, batch_size=4,
                      devices=devices, seed=0, loss='bpr', quiet=True)


@pytest.mark.parametrize('loss', ['bpr', 'hinge', 'bce', 'sampled', 'ce'])
def test_losses_and_targets_train(loss):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(20), 12)
    items = np.concatenate([rng.permutation(30)[:12] for _ in range(20)])
    _, _, candidates = data_lib.load_implicit(
        pd.DataFrame({'u': users + 1, 'i': items + 1}), 20, 30)
    dataset = data_lib.SeqDataset(users, items, 3, 20, 30, candidates,
                                  targets=2, seed=0)
    devices = [mx.cpu()]
    set_seed(0)
    net = _net(dataset, devices, num_factors=4, d=2, d_prime=1)
    trainer = _trainer(net, lr=0.05)
    history = train_lib.fit(net, dataset, trainer, num_epochs=6,
                            batch_size=32, devices=devices, seed=0,
                            loss=loss, num_negatives=3 if loss in (
                                'bce', 'sampled') else None, quiet=True)
    assert history[-1]['train_loss'] < history[0]['train_loss']


def test_fit_d2l_stops_on_nan_parameters():
    """d2l would rank NaN scores (and once reported HR 1.0): it stops."""
    dataset = _tiny_dataset(num_users=6, num_items=20, per_user=8, L=3)
    devices = [mx.cpu()]
    net = _net(dataset, devices, hybridize=False)
    trainer = _trainer(net)
    net.b.weight.set_data(mx.np.full(net.b.weight.shape, np.nan))
    calls = []
    with pytest.raises(FloatingPointError, match='epoch 1: parameter .* '
                                                 'NaN or infinite'):
        train_lib.fit_d2l(net, dataset, trainer, num_epochs=2,
                          batch_size=16, devices=devices,
                          test_input={u: [0] for u in range(6)},
                          candidates=dataset.cand,
                          evaluator=lambda *a: calls.append(a) or (1., 1.),
                          on_epoch=calls.append)
    assert calls == []      # neither evaluated nor recorded


def test_bce_mean_is_the_authors_reduction():
    pos = np.array([[0.5, -1.0, 2.0]])
    neg = np.array([[0.3, -0.2]])

    def softplus(x):
        return np.log1p(np.exp(x))
    want = softplus(-pos).mean() + softplus(neg).mean()
    got = losses.bce_mean_loss(mx.np.array(pos), mx.np.array(neg))
    np.testing.assert_allclose(got.asnumpy(), [want], rtol=1e-5)


def test_torchadam_equals_pytorchs_update():
    # torch.optim.Adam: m, v as usual; w -= lr * m_hat / (sqrt(v_hat) + eps)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-3
    w0 = np.array([0.5, -0.25, 1e-4])
    grads = [np.array([1e-3, -2.0, 1e-5]), np.array([0.5, 1e-4, -1e-5]),
             np.array([-0.1, 0.3, 2e-5])]
    w, m, v = w0.copy(), 0 * w0, 0 * w0
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    def run(name):
        opt = mx.optimizer.create(name, learning_rate=lr, beta1=b1,
                                  beta2=b2, epsilon=eps)
        weight = mx.nd.array(w0, dtype='float64')
        state = opt.create_state(0, weight)
        for g in grads:
            opt.update(0, weight, mx.nd.array(g, dtype='float64'), state)
        return weight.asnumpy()
    # MXNet's kernel takes its scalars (lr, epsilon) in float32
    np.testing.assert_allclose(run('torchadam'), w, rtol=1e-4, atol=1e-8)
    # MXNet's own adam differs where gradients are near epsilon
    assert abs(run('adam') - w)[2] > 10 * 1e-4 * abs(w[2])


def _numpy_adam(w, grads, *, lr=0.1, b1=0.9, b2=0.999, eps=1e-8):
    """MXNet's Adam (bias correction folded into lr) on NumPy arrays."""
    m, v = 0 * w, 0 * w
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (
            np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize('name', ['adam', 'torchadam'])
def test_lazy_rows_update_only_the_rows_with_a_gradient(name):
    from caser_gluon.optimizers import LAZY
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(6, 3))
    rows = [np.array([1, 4]), np.array([4, 5]), np.array([1, 4])]
    grads = [np.zeros_like(w0) for _ in rows]
    for g, r in zip(grads, rows):
        g[r] = rng.normal(size=(len(r), 3))
    opt = LAZY[name](learning_rate=0.1)
    param = mx.gluon.Parameter('table', shape=w0.shape)
    opt.param_dict, opt.lazy_names = {0: param}, {'table'}
    weight = mx.nd.array(w0, dtype='float64')
    state = opt.create_state(0, weight)
    for g in grads:
        opt.update(0, weight, mx.nd.array(g, dtype='float64'), state)
    got = weight.asnumpy()
    np.testing.assert_array_equal(got[[0, 2, 3]], w0[[0, 2, 3]])  # untouched
    if name == 'adam':            # row 4, in every batch: plain Adam
        want = _numpy_adam(w0[4], [g[4] for g in grads])
        # MXNet's kernel takes its scalars (lr, epsilon) in float32
        np.testing.assert_allclose(got[4], want, rtol=1e-4)
    # row 5, in the second batch only: one step from zero moments with the
    # table's bias correction at t = 2 (its moments never decayed before)
    m, v = 0.1 * grads[1][5], 0.001 * grads[1][5] ** 2
    step = 0.1 * np.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2) * m / np.sqrt(v)
    if name == 'adam':
        np.testing.assert_allclose(got[5], w0[5] - step, rtol=1e-4)
    # every row with a gradient at every step: the dense update
    grads = [rng.normal(size=w0.shape) for _ in rows]
    results = []
    for lazy in ({'table'}, set()):
        opt = LAZY[name](learning_rate=0.1)
        opt.param_dict, opt.lazy_names = {0: param}, lazy
        weight = mx.nd.array(w0, dtype='float64')
        state = opt.create_state(0, weight)
        for g in grads:
            opt.update(0, weight, mx.nd.array(g, dtype='float64'), state)
        results.append(weight.asnumpy())
    np.testing.assert_allclose(*results, rtol=1e-6)


def test_lazy_tables_are_the_large_ones():
    dataset = _tiny_dataset(num_users=12, num_items=30)
    net = _net(dataset)
    names = {key: [p.name for p in ps]
             for key, ps in net.row_tables().items()}
    assert [len(v) for v in names.values()] == [1, 1, 2]
    lazy = train_lib.make_trainer(net, lr=0.1, wd=0, optimizer='adam',
                                  kvstore='device', lazy=True)
    dense = train_lib.make_trainer(net, lr=0.1, wd=0, optimizer='adam',
                                   kvstore='device')

    def tables(trainer, mode, users=2, seqs=10, items=4):
        return train_lib.lazy_tables(net, trainer, mode=mode, ids_per_batch={
            'users': users, 'seqs': seqs, 'items': items})
    # 12 users > 4 x 2; 31 input rows < 4 x 10; 30 output rows > 4 x 4
    assert tables(lazy, 'auto') == {names['users'][0]: 'users',
                                    **{n: 'items' for n in names['items']}}
    assert len(tables(lazy, 'on')) == 4
    assert tables(lazy, 'off') == {} == tables(dense, 'on')
    assert 'items' not in tables(lazy, 'on', items=None).values()  # softmax
    with pytest.raises(ValueError, match='needs --optimizer adam'):
        train_lib.make_trainer(net, lr=0.1, wd=0, optimizer='sgd',
                               kvstore='device', lazy=True)


def test_lazy_training_leaves_unseen_rows_and_matches_dense_once():
    dataset = _tiny_dataset(num_users=12, num_items=60, per_user=7)

    def train(mode, batch_size, wd=0.0):
        """(Q before, every parameter after) of one epoch, in model order."""
        set_seed(0)
        net = _net(dataset)
        before = net.Q.weight.data().asnumpy().copy()
        trainer = train_lib.make_trainer(net, lr=0.05, wd=wd,
                                         optimizer='adam', kvstore='device',
                                         lazy=mode == 'on')
        train_lib.fit(net, dataset, trainer, num_epochs=1,
                      batch_size=batch_size, devices=[mx.cpu()], seed=0,
                      loss='bpr', quiet=True, lazy_update=mode)
        return before, [p.data().asnumpy()
                        for p in net.collect_params().values()]
    order = list(_net(dataset).collect_params().values())
    q_at = next(i for i, p in enumerate(order) if p.shape[0] == 61)  # Q
    seen = np.unique(np.concatenate([dataset.seq_items.ravel(),
                                     dataset.seq_tgt.ravel()]))
    unseen = np.setdiff1d(np.arange(61), seen)
    assert len(unseen)
    before, lazy = train('on', 4, wd=0.01)
    # items never in a window keep their values in the lazy update...
    np.testing.assert_array_equal(lazy[q_at][unseen], before[unseen])
    _, dense = train('off', 4, wd=0.01)
    # ...where the dense one decays them
    assert np.abs(dense[q_at][unseen] - before[unseen]).min() > 0
    # one step from fresh moments: the two updates are the same
    _, lazy = train('on', len(dataset))
    _, dense = train('off', len(dataset))
    for a, b in zip(lazy, dense):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
