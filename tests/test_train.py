"""Tests of ``caser-gluon train``: devices, run folders, resume, Ctrl-C.

Most runs train on a tiny ratings file (24 users, 30 items) for speed;
the chapter's numbers on ML-100K are checked in ``test_recommend.py``.
"""
import json
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest
from helpers import SMALL, error_line, interrupt_at, run_cli, write_ratings
from mxnet import np

from caser_gluon import data as data_lib
from caser_gluon import losses
from caser_gluon import train as train_lib
from caser_gluon.config import ModelConfig, RunConfig, to_flat
from caser_gluon.interactions import ItemSets
from caser_gluon.runtime import resolve_devices, set_seed
from caser_gluon.zoo import build_model


def train(ratings, out, *argv):
    """``caser-gluon train`` on ``ratings`` into ``out``; its exit code."""
    return run_cli(['train', '--ratings', str(ratings), '--out', str(out),
                    *SMALL, *argv])


def metrics(out):
    return json.loads((out / 'metrics.json').read_text())


def test_resolve_devices():
    assert resolve_devices('cpu') == [mx.cpu()]
    assert resolve_devices('cpu:2') == [mx.cpu(0), mx.cpu(1)]
    auto = resolve_devices('auto')
    assert auto and all(isinstance(d, mx.Context) for d in auto)


@pytest.mark.parametrize('spec', ['tpu', 'cpu:0', 'cpu:x', 'gpu', 'gpu:a',
                                  'cpu:65'])
def test_unknown_device_strings(spec):
    with pytest.raises(ValueError, match='not understood'):
        resolve_devices(spec)


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason='machine has a GPU')
def test_gpu_without_gpu_fails_clearly():
    with pytest.raises(ValueError, match='does not exist'):
        resolve_devices('gpu:0')
    with pytest.raises(ValueError, match='no GPU found'):
        resolve_devices('all')


def test_run_folder_is_complete_and_runs_are_seeded(ratings, tmp_path,
                                                    capsys):
    runs = []
    for name in ['a', 'b']:
        assert train(ratings, tmp_path / name, '--epochs', '2', '--seed',
                     '3', '--devices', 'cpu:2') == 0
        runs.append(metrics(tmp_path / name))
    a, b = runs
    assert a == [dict(r, train_seconds=r2['train_seconds'],
                      examples_per_sec=r2['examples_per_sec'],
                      eval_seconds=r2['eval_seconds'])
                 for r, r2 in zip(b, a)]        # all but timings equal
    assert [r['epoch'] for r in a] == [1, 2]
    assert a[1]['train_loss'] < a[0]['train_loss']
    folder = tmp_path / 'a'
    for name in ['config.json', 'metrics.csv', 'metrics.png',
                 'caser.params', 'recommend.npz', 'result.json',
                 'checkpoint.json', 'checkpoint-e2.params']:
        assert (folder / name).stat().st_size > 0, name
    config = json.loads((folder / 'config.json').read_text())
    assert config['contexts'] == ['cpu(0)', 'cpu(1)']
    assert config['seed'] == 3 and config['epochs'] == 2
    assert config['data']['path'] == str(ratings)
    assert config['data']['rows_read'] == 240
    expected = to_flat(RunConfig().replace(
        ratings=str(ratings), epochs=2, seed=3, devices='cpu:2',
        batch_size=32, num_factors=8))
    assert {k: config[k] for k in expected} == expected
    result = json.loads((folder / 'result.json').read_text())
    assert result['epoch'] == 2 and result['hit_rate'] == a[1]['hit_rate']
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith('final: epoch 2 hr@10 ')
    assert last.endswith(f'run folder {tmp_path / "b"}')


def test_resume_trains_to_the_given_epochs_like_one_run(ratings, tmp_path,
                                                         capsys):
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    assert train(ratings, whole) == 0                   # the default, 8
    assert train(ratings, part, '--epochs', '3') == 0
    assert [r['epoch'] for r in metrics(part)] == [1, 2, 3]
    # --epochs 8 is the default, but given: the run goes on to 8
    assert run_cli(['train', '--resume', str(part), '--epochs', '8',
                    '--quiet']) == 0
    assert 'resuming' in capsys.readouterr().out
    resumed, ref = metrics(part), metrics(whole)
    assert [r['epoch'] for r in resumed] == list(range(1, 9))
    for r, w in zip(resumed, ref):
        for key in ['train_loss', 'hit_rate', 'auc', 'ndcg@10', 'mrr']:
            assert r[key] == w[key], (r['epoch'], key)
    assert json.loads((part / 'checkpoint.json').read_text())['epoch'] == 8
    assert json.loads((part / 'config.json').read_text())['epochs'] == 8
    # the saved value of another flag is accepted, a different one is not
    assert run_cli(['train', '--resume', str(part), '--lr', '0.04',
                    '--quiet']) == 0
    capsys.readouterr()
    assert run_cli(['train', '--resume', str(part), '--lr', '0.1',
                    '--quiet']) == 2
    line = error_line(capsys.readouterr().err, 'train')
    assert "--lr 0.1 differs from the run's 0.04" in line
    assert metrics(part) == resumed


def test_resume_needs_a_run_with_a_checkpoint(tmp_path, capsys):
    values = dict(to_flat(RunConfig()), epochs=2)
    (tmp_path / 'config.json').write_text(json.dumps(values))
    assert run_cli(['train', '--resume', str(tmp_path), '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'no checkpoint to resume from' in error_line(err, 'train')
    (tmp_path / 'config.json').write_text('{"epochs": 2}')
    assert run_cli(['train', '--resume', str(tmp_path), '--quiet']) == 2
    line = error_line(capsys.readouterr().err, 'train')
    assert f"{tmp_path / 'config.json'}: no 'model'" in line


def test_overwrite_and_out_that_is_a_file(ratings, tmp_path, capsys):
    out = tmp_path / 'run'
    assert train(ratings, out, '--epochs', '1') == 0
    first = metrics(out)
    capsys.readouterr()
    assert train(ratings, out, '--epochs', '1', '--seed', '1') == 2
    line = error_line(capsys.readouterr().err, 'train')
    assert 'already holds a run' in line and '--overwrite' in line
    assert metrics(out) == first
    assert train(ratings, out, '--epochs', '1', '--seed', '1',
                 '--overwrite') == 0
    assert metrics(out)[0]['train_loss'] != first[0]['train_loss']
    capsys.readouterr()
    assert train(ratings, ratings, '--epochs', '1') == 2
    assert 'is a file' in error_line(capsys.readouterr().err, 'train')
    assert train(ratings, ratings / 'run', '--epochs', '1') == 2
    assert f'{ratings} is a file' in error_line(capsys.readouterr().err,
                                                'train')


def test_ctrl_c_in_the_first_epoch_says_nothing_to_resume(
        ratings, tmp_path, capsys, monkeypatch):
    interrupt_at(monkeypatch, 1)
    assert train(ratings, tmp_path / 'run', '--epochs', '3') == 130
    err = capsys.readouterr().err.strip()
    assert err == ('caser-gluon train: interrupted during epoch 1: no '
                   'checkpoint was written, nothing to resume (metrics so '
                   f'far: {tmp_path / "run"})')
    assert not (tmp_path / 'run' / 'checkpoint.json').exists()


def test_ctrl_c_later_keeps_the_last_epoch(ratings, tmp_path, capsys,
                                           monkeypatch):
    out = tmp_path / 'run'
    interrupt_at(monkeypatch, 2)
    assert train(ratings, out, '--epochs', '3') == 130
    err = capsys.readouterr().err.strip()
    assert err == (f'caser-gluon train: interrupted after epoch 1; its '
                   f'checkpoint is in {out}: continue with --resume {out}')
    assert json.loads((out / 'checkpoint.json').read_text())['epoch'] == 1
    monkeypatch.undo()
    assert run_cli(['train', '--resume', str(out), '--quiet']) == 0
    assert [r['epoch'] for r in metrics(out)] == [1, 2, 3]


@pytest.mark.slow
def test_ctrl_c_signal_exits_130_without_traceback(tmp_path):
    ratings = tmp_path / 'ratings.tsv'
    write_ratings(ratings, num_users=200, num_items=60, per_user=30)
    out = tmp_path / 'run'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'caser_gluon.train', '--ratings',
         str(ratings), '--epochs', '100000', '--batch-size', '16',
         '--quiet', '--out', str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / 'checkpoint.json').exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert 'continue with --resume' in err and 'Traceback' not in err
    assert len(err.strip().splitlines()) == 1
    saved = json.loads((out / 'checkpoint.json').read_text())
    assert saved['epoch'] >= 1 and len(metrics(out)) >= saved['epoch']


def test_d2l_loop_stops_when_parameters_go_nan(ratings, tmp_path, capsys):
    out = tmp_path / 'run'
    assert train(ratings, out, '--loop', 'd2l', '--lr', '1e9', '--epochs',
                 '2') == 2
    line = error_line(capsys.readouterr().err, 'train')
    assert 'epoch 1: parameter' in line and 'NaN or infinite' in line
    assert not (out / 'metrics.json').exists()      # no HR 1.0 recorded


def bpr_on_batch(net, dataset, idx, negatives):
    users = np.array(dataset.seq_users[idx])
    seqs = np.array(dataset.seq_items[idx])
    items = np.array(onp.stack([dataset.seq_tgt[idx, 0], negatives], 1))
    scores = net(users, seqs, items)
    return float(losses.bpr_loss(scores[:, 0], scores[:, 1]).mean())


def test_d2l_train_ranking_on_two_cpu_contexts(capsys):
    rng = onp.random.default_rng(0)
    num_users, num_items = 30, 50
    users = onp.repeat(onp.arange(num_users), 16)
    items = onp.concatenate([rng.choice(num_items, 16, replace=False)
                             for _ in range(num_users)])
    candidates = ItemSets.from_pairs(users, items, num_users=num_users,
                                     num_items=num_items)
    dataset = data_lib.SeqDataset(users, items, 5, num_users, num_items,
                                  candidates, seed=0)
    set_seed(0)
    devices = resolve_devices('cpu:2')
    net = build_model(ModelConfig(), num_users=num_users,
                      num_items=num_items, devices=devices)
    trainer = train_lib.make_trainer(net, lr=0.04, wd=1e-5,
                                     optimizer='adam', kvstore='device')
    idx = rng.choice(len(dataset), 256, replace=False)
    negatives = rng.integers(0, num_items, 256)
    ok = ~candidates.contains(dataset.seq_users[idx], negatives)
    idx, negatives = idx[ok], negatives[ok]
    before = bpr_on_batch(net, dataset, idx, negatives)
    test_input = {u: [int(rng.choice(num_items))] for u in range(num_users)}
    records = []
    history = train_lib.fit_d2l(
        net, dataset, trainer, num_epochs=2, batch_size=32,
        devices=devices, test_input=test_input, candidates=candidates,
        evaluator=lambda *a: (0.5, 0.25), on_epoch=records.append)
    after = bpr_on_batch(net, dataset, idx, negatives)
    assert after < before - 0.05
    assert history == records == [{'epoch': e, 'hit_rate': 0.5,
                                   'auc': 0.25} for e in (1, 2)]
    out = capsys.readouterr().out
    assert 'cpu(0), cpu(1)' in out and 'train loss' in out
    for param in net.collect_params().values():   # both contexts agree
        copies = param.list_data()
        onp.testing.assert_allclose(copies[0].asnumpy(),
                                    copies[1].asnumpy())


def test_d2l_loop_through_the_cli(ratings, tmp_path):
    out = tmp_path / 'run'
    assert train(ratings, out, '--loop', 'd2l', '--epochs', '2') == 0
    records = metrics(out)
    assert [r['epoch'] for r in records] == [1, 2]
    assert all(0 <= r['hit_rate'] <= 1 and 0 <= r['auc'] <= 1
               for r in records)
    result = json.loads((out / 'result.json').read_text())
    # the result is this package's evaluation of the last epoch
    assert result['hit_rate'] == records[-1]['hit_rate']
    assert result['auc'] == pytest.approx(records[-1]['auc'])


def test_resume_in_a_process_whose_names_cross_ten(ratings, tmp_path):
    # Gluon numbers blocks per process (embedding9, embedding10, ...); a
    # Trainer given a dict sorts them by name, so optimizer states saved
    # by one model instance went to the wrong parameters of the next
    import re

    from caser_gluon.model import Caser

    def number(net):
        return int(re.search(r'(\d+)_weight$', net.P.weight.name).group(1))
    while (number(Caser(8, 5, 7)) + 4) % 10 != 8:
        pass        # the run's embeddings will be numbered 8, 9, 10, 11
    out = tmp_path / 'run'
    assert train(ratings, out, '--epochs', '1') == 0
    assert run_cli(['train', '--resume', str(out), '--epochs', '2',
                    '--quiet']) == 0
    assert [r['epoch'] for r in metrics(out)] == [1, 2]


def test_ctrl_c_dropped_in_a_destructor_still_stops_the_loop():
    """Python would drop a KeyboardInterrupt raised inside ``__del__``;
    there the signal is only recorded, and the next batch raises it."""
    from caser_gluon import runtime

    class Frees:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
    try:
        runtime.catch_interrupts()
        runtime.check_interrupted()               # nothing yet
        Frees()                                   # recorded only
        with pytest.raises(KeyboardInterrupt):
            runtime.check_interrupted()
        dataset = _tiny_dataset_for_interrupt()
        net = build_model(ModelConfig(num_factors=4),
                          num_users=dataset.num_users,
                          num_items=dataset.num_items, devices=[mx.cpu()])
        trainer = train_lib.make_trainer(net, lr=0.01, wd=0.0,
                                         optimizer='adam', kvstore='device')
        with pytest.raises(KeyboardInterrupt):
            train_lib.train_epoch(net, dataset, trainer, batch_size=8,
                                  devices=[mx.cpu()], rng=onp.random.
                                  default_rng(0), loss='bpr')
    finally:
        runtime._INTERRUPTED.clear()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _tiny_dataset_for_interrupt():
    users = onp.repeat(onp.arange(4), 8)
    items = onp.tile(onp.arange(8), 4)
    return data_lib.SeqDataset(
        users, items, 3, 4, 10,
        ItemSets.from_pairs(users, items, num_users=4, num_items=10), seed=0)
