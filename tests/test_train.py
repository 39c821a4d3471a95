"""Tests of caser_gluon.train: devices, the d2l loop, the CLI."""
import json

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from caser_gluon import train as train_lib
from caser_gluon.data import SeqDataset


def test_resolve_devices():
    assert train_lib.resolve_devices('cpu') == [mx.cpu()]
    assert train_lib.resolve_devices('cpu:2') == [mx.cpu(0), mx.cpu(1)]
    auto = train_lib.resolve_devices('auto')
    assert auto and all(isinstance(d, mx.Context) for d in auto)


@pytest.mark.parametrize('spec', ['tpu', 'cpu:0', 'cpu:x', 'gpu', 'gpu:a'])
def test_unknown_device_strings(spec):
    with pytest.raises(ValueError, match='not understood'):
        train_lib.resolve_devices(spec)


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason='machine has a GPU')
def test_gpu_without_gpu_fails_clearly():
    with pytest.raises(ValueError, match='does not exist'):
        train_lib.resolve_devices('gpu:0')
    with pytest.raises(ValueError, match='no GPU found'):
        train_lib.resolve_devices('all')


def test_bpr_loss_matches_d2l_and_stays_finite():
    from d2l import mxnet as d2l
    pos = np.array([2.0, -1.0, 0.5, 0.0])
    neg = np.array([1.0, 1.0, 0.5, 3.0])
    ours = train_lib.bpr_loss(pos, neg).sum()
    onp.testing.assert_allclose(float(ours), float(d2l.BPRLoss()(pos, neg)),
                                rtol=1e-5)
    far = train_lib.bpr_loss(np.array([-200.0]), np.array([0.0]))
    assert onp.isfinite(float(far)) and abs(float(far) - 200) < 1e-3
    assert not onp.isfinite(float(d2l.BPRLoss()(np.array([-200.0]),
                                                np.array([0.0]))))


@pytest.mark.parametrize('argv, message', [
    (['--epochs', '0'], 'must be > 0'),
    (['--L', '-1'], 'must be > 0'),
    (['--d', '-2'], 'must be >= 0'),
    (['--loop', 'slow'], 'invalid choice'),
    (['--devices', 'tpu:1', '--epochs', '1'], 'not understood'),
])
def test_bad_flags_exit_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_lib.main(argv + ['--quiet'])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def bpr_on_batch(net, dataset, idx, negatives):
    users = np.array(dataset.seq_users[idx])
    seqs = np.array(dataset.seq_items[idx])
    items = np.array(onp.stack([dataset.seq_tgt[idx, 0], negatives], 1))
    scores = net(users, seqs, items)
    return float(train_lib.bpr_loss(scores[:, 0], scores[:, 1]).mean())


@pytest.mark.slow
def test_d2l_train_ranking_on_two_cpu_contexts(ml100k_split, capsys):
    s = ml100k_split
    train_lib.set_seed(0)
    dataset = SeqDataset(s['users'], s['items'], 5, 943, 1682,
                         s['candidates'], seed=0)
    devices = train_lib.resolve_devices('cpu:2')
    net = train_lib.build_net(num_users=943, num_items=1682,
                              devices=devices)
    trainer = train_lib.make_trainer(net)
    rng = onp.random.default_rng(1)
    idx = rng.choice(len(dataset), 2048, replace=False)
    negatives = rng.integers(0, 1682, 2048)
    negatives[dataset.seen[dataset.seq_users[idx], negatives]] = 1681
    before = bpr_on_batch(net, dataset, idx, negatives)
    history = train_lib.fit_d2l(
        net, dataset, trainer, num_epochs=1, batch_size=4096,
        devices=devices, test_input=s['test_input'],
        candidates=s['candidates'])
    after = bpr_on_batch(net, dataset, idx, negatives)
    assert after < before - 0.1
    assert len(history) == 1
    assert 0.05 < history[0]['hit_rate'] < 0.6
    assert 0.6 < history[0]['auc'] < 0.95
    out = capsys.readouterr().out
    assert 'cpu(0), cpu(1)' in out and 'train loss' in out
    params = [p.list_data() for p in net.collect_params().values()]
    for copies in params:       # both contexts hold the same parameters
        onp.testing.assert_allclose(copies[0].asnumpy(),
                                    copies[1].asnumpy())


@pytest.mark.slow
def test_cli_run_writes_run_folder_and_is_seeded(tmp_path):
    argv = ['--epochs', '2', '--devices', 'cpu:2', '--quiet', '--seed', '3']
    runs = []
    for name in ['a', 'b']:
        train_lib.main(argv + ['--out', str(tmp_path / name)])
        runs.append(json.loads((tmp_path / name / 'metrics.json')
                               .read_text()))
    folder = tmp_path / 'a'
    for name in ['config.json', 'metrics.csv', 'metrics.png',
                 'caser.params']:
        assert (folder / name).stat().st_size > 0
    config = json.loads((folder / 'config.json').read_text())
    assert config['devices'] == ['cpu(0)', 'cpu(1)'] and config['seed'] == 3
    a, b = runs
    assert [r['epoch'] for r in a] == [1, 2]
    assert a[1]['train_loss'] < a[0]['train_loss']
    assert 0.1 < a[1]['hit_rate'] < 0.6 and 0.7 < a[1]['auc'] < 0.95
    for ra, rb in zip(a, b):
        for key in ['train_loss', 'hit_rate', 'auc']:
            assert ra[key] == rb[key]
