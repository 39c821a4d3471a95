"""Behaviour of the fast training loop ("Training the Model" section).

No timings here: speed is measured by ``benchmarks/bench.py``.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import npx

from caser_gluon import data as data_lib
from caser_gluon import train as train_lib

npx.set_np()


def _tiny_dataset(num_users=12, num_items=30, per_user=9, seed=0):
    """Each user a random history of ``per_user`` distinct items."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    items = np.concatenate([rng.choice(num_items, per_user, replace=False)
                            for _ in range(num_users)])
    candidates = {u: items[users == u].tolist() for u in range(num_users)}
    return data_lib.SeqDataset(users, items, 5, num_users, num_items,
                               candidates, seed=seed)


def test_bpr_loss_matches_d2l_where_finite():
    from d2l import mxnet as d2l
    pos = mx.np.array([3.0, -1.0, 0.5, 0.0, -60.0, -200.0])
    neg = mx.np.array([1.0, 2.0, 0.5, 40.0, 60.0, 0.0])
    ours = train_lib.bpr_loss(pos, neg).asnumpy()
    theirs = np.array([d2l.BPRLoss()(pos[i:i + 1], neg[i:i + 1]).item()
                       for i in range(len(pos))])
    finite = np.isfinite(theirs)
    assert finite[:4].all() and not finite.all()
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5,
                               atol=1e-6)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours[~finite], (neg - pos).asnumpy()[~finite],
                               rtol=1e-5)


def test_batches_cover_every_window_once_with_unseen_negatives():
    dataset = _tiny_dataset()
    rng = np.random.default_rng(1)
    batches = list(train_lib._batches(dataset, batch_size=7, rng=rng))
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
    assert not dataset.seen[users, items[:, 1]].any()
    assert dataset.seen[users, items[:, 0]].all()


@pytest.mark.parametrize('hybridize', [False, True])
def test_loss_falls_and_is_mean_per_example(hybridize):
    train_lib.set_seed(0)
    dataset = _tiny_dataset(num_users=40, num_items=60, per_user=15)
    devices = [mx.cpu()]
    net = train_lib.build_net(num_users=40, num_items=60, devices=devices,
                              hybridize=hybridize)
    trainer = train_lib.make_trainer(net, lr=0.05)
    rng = np.random.default_rng(0)
    losses = [train_lib.train_epoch(net, dataset, trainer, batch_size=64,
                                    devices=devices, rng=rng)[0]
              for _ in range(2)]
    # the first epoch starts at ln 2 per example (scores near zero)
    assert 0.3 < losses[0] < 0.75
    assert losses[1] < losses[0]


def test_fit_reports_honest_throughput():
    train_lib.set_seed(0)
    dataset = _tiny_dataset()
    devices = [mx.cpu(0), mx.cpu(1)]
    net = train_lib.build_net(num_users=12, num_items=30, devices=devices)
    trainer = train_lib.make_trainer(net)
    history = train_lib.fit(net, dataset, trainer, num_epochs=2,
                            batch_size=16, devices=devices, seed=0,
                            quiet=True)
    assert [r['epoch'] for r in history] == [1, 2]
    for r in history:
        assert r['train_seconds'] > 0
        assert r['examples_per_sec'] == pytest.approx(
            len(dataset) / r['train_seconds'])
