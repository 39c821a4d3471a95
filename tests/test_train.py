"""Tests of caser_gluon.train: devices, the d2l loop, the CLI."""
import json

import mxnet as mx
import numpy as onp
import pandas as pd
import pytest
from mxnet import np

from caser_gluon import data as data_lib
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
    (['--loss', 'hinge', '--num-negatives', '3'], 'must equal --targets'),
    (['--loop', 'd2l', '--loss', 'bce'], 'need --loop fast'),
    (['--k-core', '5'], 'need --ratings'),
    (['--resume', '/nonexistent/run'], 'no config.json there'),
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
    assert config['contexts'] == ['cpu(0)', 'cpu(1)']
    assert config['seed'] == 3 and config['data'] == {'name': 'ml-100k'}
    # an interrupted run (1 epoch), resumed to 2, ends where a run of 2 does
    train_lib.main(['--epochs', '1', '--devices', 'cpu:2', '--quiet',
                    '--seed', '3', '--out', str(tmp_path / 'c')])
    assert (tmp_path / 'c' / 'checkpoint.params').is_file()
    train_lib.main(['--resume', str(tmp_path / 'c'), '--epochs', '2',
                    '--quiet'])
    runs.append(json.loads((tmp_path / 'c' / 'metrics.json').read_text()))
    a, b, c = runs
    assert [r['epoch'] for r in c] == [1, 2]
    for key in ['train_loss', 'hit_rate', 'auc']:
        assert c[1][key] == a[1][key]
    assert [r['epoch'] for r in a] == [1, 2]
    assert a[1]['train_loss'] < a[0]['train_loss']
    assert 0.1 < a[1]['hit_rate'] < 0.6 and 0.7 < a[1]['auc'] < 0.95
    for ra, rb in zip(a, b):
        for key in ['train_loss', 'hit_rate', 'auc']:
            assert ra[key] == rb[key]


def test_nan_loss_stops_with_epoch_and_batch():
    users = onp.repeat(onp.arange(3), 6)
    items = onp.tile(onp.arange(6), 3)
    candidates = {u: list(range(6)) for u in range(3)}
    dataset = SeqDataset(users, items, 2, 3, 10, candidates, seed=0)
    devices = [mx.cpu()]
    net = train_lib.build_net(num_users=3, num_items=10, devices=devices,
                              L=2, d=2, d_prime=1)
    trainer = train_lib.make_trainer(net, lr=0.01)
    net.b.weight.set_data(np.full((10, 1), onp.nan))
    with pytest.raises(FloatingPointError, match='epoch 1, batch 1: the '
                                                 'loss is nan'):
        train_lib.fit(net, dataset, trainer, num_epochs=2, batch_size=4,
                      devices=devices, seed=0, quiet=True)


@pytest.mark.parametrize('loss', ['bpr', 'hinge', 'bce'])
def test_losses_and_targets_train(loss):
    rng = onp.random.default_rng(0)
    users = onp.repeat(onp.arange(20), 12)
    items = onp.concatenate([rng.permutation(30)[:12] for _ in range(20)])
    _, _, candidates = data_lib.load_implicit(
        pd.DataFrame({'u': users + 1, 'i': items + 1}), 20, 30)
    dataset = SeqDataset(users, items, 3, 20, 30, candidates, targets=2,
                         seed=0)
    devices = [mx.cpu()]
    train_lib.set_seed(0)
    net = train_lib.build_net(num_users=20, num_items=30, devices=devices,
                              L=3, d=2, d_prime=1, num_factors=4)
    trainer = train_lib.make_trainer(net, lr=0.05)
    history = train_lib.fit(net, dataset, trainer, num_epochs=6,
                            batch_size=32, devices=devices, seed=0,
                            loss=loss, num_negatives=3 if loss == 'bce'
                            else None, quiet=True)
    assert history[-1]['train_loss'] < history[0]['train_loss']


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    (tmp_path / 'config.json').write_text('{"epochs": 2}')
    with pytest.raises(SystemExit) as exit_info:
        train_lib.main(['--resume', str(tmp_path), '--quiet'])
    assert exit_info.value.code == 2
    assert 'no checkpoint to resume from' in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_keeps_last_epoch_and_exits_cleanly(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / 'run'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'caser_gluon.train', '--epochs', '200',
         '--quiet', '--out', str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / 'checkpoint.json').exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert 'continue with --resume' in err and 'Traceback' not in err
    saved = json.loads((out / 'checkpoint.json').read_text())
    metrics = json.loads((out / 'metrics.json').read_text())
    assert saved['epoch'] >= 1 and len(metrics) >= saved['epoch']
