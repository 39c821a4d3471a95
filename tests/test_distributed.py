"""Tests of scaling out: several devices, several processes.

* Two CPU contexts take the same step as one context on the same batch
  (``kvstore`` ``device`` and ``local``).
* :func:`caser_gluon.distributed.shard_dataset` splits users, not windows,
  and gives every worker the same number of whole batches.
* The launcher runs a scheduler, a server and two ``dist_sync`` workers on
  127.0.0.1 (slow), and stops everything when a worker fails or the
  scheduler or a server dies (tested with stand-in processes).
"""
import json
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest
from helpers import error_line, run_cli
from mxnet import autograd, gluon, np

from caser_gluon import distributed as dist_lib
from caser_gluon import launcher as launch_lib
from caser_gluon import losses
from caser_gluon import train as train_lib
from caser_gluon.config import ModelConfig
from caser_gluon.data import SeqDataset
from caser_gluon.zoo import build_model

NUM_USERS, NUM_ITEMS, L = 12, 40, 4


def small_batch(rng, size=16):
    """A batch ``(users, seqs, items)`` of the small Caser's ids."""
    users = rng.integers(0, NUM_USERS, size).astype(onp.int32)
    seqs = rng.integers(0, NUM_ITEMS + 1, (size, L)).astype(onp.int32)
    items = rng.integers(0, NUM_ITEMS, (size, 2)).astype(onp.int32)
    return users, seqs, items


def small_caser(devices, hybridize=True):
    return build_model(ModelConfig(num_factors=6, L=L, d=3, d_prime=2,
                                   drop_ratio=0), num_users=NUM_USERS,
                       num_items=NUM_ITEMS, devices=devices,
                       hybridize=hybridize)


def one_step(devices, batch, init, *, kvstore, optimizer):
    """Parameters (NumPy) after one trainer step of a small Caser."""
    net = small_caser(devices)
    for param, value in zip(net.collect_params().values(), init):
        param.set_data(np.array(value))
    trainer = train_lib.make_trainer(net, lr=0.1, wd=1e-5,
                                     optimizer=optimizer, kvstore=kvstore)
    shards = [gluon.utils.split_and_load(np.array(a), devices,
                                         even_split=False) for a in batch]
    with autograd.record():
        parts = [losses.bpr_loss(*net(u, s, i).T)
                 for u, s, i in zip(*shards)]
    for part in parts:
        part.backward()
    trainer.step(len(batch[0]))
    params = list(net.collect_params().values())
    for param in params:        # every device holds the same copy
        copies = [c.asnumpy() for c in param.list_data()]
        for copy in copies[1:]:
            onp.testing.assert_array_equal(copy, copies[0])
    return [p.data(devices[0]).asnumpy() for p in params]


@pytest.mark.parametrize('kvstore', ['device', 'local'])
@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_two_cpu_contexts_step_like_one(kvstore, optimizer, seed):
    rng = onp.random.default_rng(seed)
    batch = small_batch(rng)
    ref = small_caser([mx.cpu()], hybridize=False)
    init = [p.data().asnumpy() + rng.normal(0, 0.1, p.shape)
            for p in ref.collect_params().values()]
    one = one_step([mx.cpu()], batch, init, kvstore=kvstore,
                   optimizer=optimizer)
    two = one_step([mx.cpu(0), mx.cpu(1)], batch, init, kvstore=kvstore,
                   optimizer=optimizer)
    moved = 0
    for a, b, start in zip(one, two, init):
        # Adam's first step is lr * sign(g): where g is ~0 the two sums
        # may round to opposite signs, so compare at a loose atol there
        atol = 1e-6 if optimizer == 'sgd' else 1e-4
        onp.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)
        moved += not onp.allclose(a, start)
    assert moved >= len(init) // 2          # the step did something


@pytest.fixture(scope='module')
def dataset(ml100k_split):
    s = ml100k_split
    return SeqDataset(s['users'], s['items'], 5, s['num_users'],
                      s['num_items'], s['candidates'], seed=0)


@pytest.mark.parametrize('num_workers', [1, 2, 3])
def test_shards_split_users_in_whole_equal_batches(dataset, num_workers):
    batch_size = 1000
    shards = [dist_lib.shard_dataset(dataset, rank=r,
                                     num_workers=num_workers,
                                     batch_size=batch_size, seed=0)
              for r in range(num_workers)]
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1 and sizes.pop() % batch_size == 0
    users = [set(s.shard_users.tolist()) for s in shards]
    assert set.union(*users) == set(dataset.seq_users.tolist())
    assert sum(map(len, users)) == len(set.union(*users))    # disjoint
    total = 0
    for shard, own in zip(shards, users):
        assert set(shard.seq_users.tolist()) == own
        assert shard.test_seq is dataset.test_seq      # all users' tests
        assert shard.num_repeated < batch_size + 100
        total += len(shard) - shard.num_repeated
        # every window of the shard is one of the dataset's
        rows = {(u, *s, *t) for u, s, t in zip(
            dataset.seq_users, dataset.seq_items.tolist(),
            dataset.seq_tgt.tolist())}
        assert all((u, *s, *t) in rows for u, s, t in zip(
            shard.seq_users[::97], shard.seq_items[::97].tolist(),
            shard.seq_tgt[::97].tolist()))
    assert total == len(dataset)          # each window once, plus top-ups


def test_assign_users_balances():
    counts = onp.array([10, 1, 7, 3, 3, 0, 6])
    owner = dist_lib.assign_users(counts, 2)
    # largest first to the lighter worker: 10->0, 7->1, 6->1, 3->0, 3->0,
    # 1->1, 0->1: loads 16 and 14
    assert owner.tolist() == [0, 1, 1, 0, 0, 1, 1]
    assert (dist_lib.assign_users(counts, 2) == owner).all()


def test_dist_kvstore_without_scheduler_fails_clearly(monkeypatch, capsys):
    for name in dist_lib.DMLC_VARS:
        monkeypatch.delenv(name, raising=False)
    assert run_cli(['train', '--kvstore', 'dist_sync', '--epochs', '1',
                    '--quiet']) == 2
    line = error_line(capsys.readouterr().err, 'train')
    assert 'caser-gluon train-dist' in line and 'DMLC_' in line


def test_train_args_get_kvstore_and_one_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)         # the fresh --out is made here
    argv = launch_lib._train_argv(['--epochs', '1'], kvstore='dist_async')
    assert argv[:4] == ['--epochs', '1', '--kvstore', 'dist_async']
    assert argv[4] == '--out' and argv[5].startswith('runs/caser-dist-')
    assert (tmp_path / argv[5]).is_dir()
    kept = ['--kvstore=dist_sync', '--out', 'x']
    assert launch_lib._train_argv(kept, kvstore='dist_async') == kept


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _spawn(code):
    """A child in its own process group, as launch starts them."""
    return subprocess.Popen([sys.executable, '-c', code],
                            start_new_session=True)


SLEEP = 'import time; time.sleep(60)'


@pytest.mark.parametrize('dying', ['server', 'scheduler'])
def test_wait_stops_when_a_server_dies(dying, capsys):
    procs = [('scheduler', _spawn(SLEEP)), ('server', _spawn(SLEEP)),
             ('worker', _spawn(SLEEP)), ('worker', _spawn(SLEEP))]
    roles = [role for role, _ in procs]
    procs[roles.index(dying)] = (dying, _spawn('import sys; sys.exit(3)'))
    try:
        begin = time.monotonic()
        code = launch_lib._wait(procs, deadline=time.monotonic() + 30,
                              timeout=30)
        assert time.monotonic() - begin < 20
    finally:
        launch_lib._stop([p for _, p in procs])
    assert code != 0
    pid = procs[roles.index(dying)][1].pid
    assert capsys.readouterr().err.strip() == (
        f'caser-gluon train-dist: the {dying} (pid {pid}) exited with '
        'code 3 while workers were running; stopping every process')
    assert not any(_alive(p.pid) for _, p in procs)


def test_wait_returns_the_workers_outcome(capsys):
    ok = [('scheduler', _spawn(SLEEP)), ('worker', _spawn('pass')),
          ('worker', _spawn('pass'))]
    failing = [('scheduler', _spawn(SLEEP)), ('worker', _spawn(SLEEP)),
               ('worker', _spawn('import sys; sys.exit(5)'))]
    slow = [('scheduler', _spawn(SLEEP)), ('worker', _spawn(SLEEP))]
    try:
        assert launch_lib._wait(ok, deadline=None, timeout=None) == 0
        assert launch_lib._wait(failing, deadline=None, timeout=None) == 5
        assert 'a worker exited with code 5' in capsys.readouterr().err
        assert launch_lib._wait(slow, deadline=time.monotonic() + 0.5,
                              timeout=0.5) == 124
        assert 'timeout after 0.5 s' in capsys.readouterr().err
    finally:
        launch_lib._stop([p for _, p in ok + failing + slow])
    assert not any(_alive(p.pid) for _, p in ok + failing + slow)


def stand_in_python(tmp_path, script):
    """An executable that launch starts instead of Python (any role)."""
    python = tmp_path / 'python'
    python.write_text('#!/bin/sh\n' + script)
    python.chmod(0o755)
    return str(python)


@pytest.mark.parametrize('script, code, message', [
    # the server dies; the scheduler and workers would wait forever
    ('if [ "$DMLC_ROLE" = server ]; then exit 3; fi\nexec sleep 60\n', 1,
     'the server (pid'),
    # the workers fail before connecting; the others would wait forever
    ('if [ "$DMLC_ROLE" = worker ]; then exit 2; fi\nexec sleep 60\n', 2,
     'a worker exited with code 2'),
])
def test_launch_stops_everything_when_a_process_fails(tmp_path, capsys,
                                                      script, code,
                                                      message):
    started = []
    popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        p = popen(*args, **kwargs)
        started.append(p.pid)
        return p

    begin = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, 'Popen', recording_popen)
        got = launch_lib.launch(['--out', str(tmp_path / 'run')], workers=2,
                              kvstore='dist_sync',
                              servers=1, timeout=60,
                              python=stand_in_python(tmp_path, script))
    assert got == code
    assert time.monotonic() - begin < 30
    assert message in capsys.readouterr().err
    assert len(started) == 4
    assert not any(_alive(pid) for pid in started)


def test_wait_lets_workers_finish_after_a_clean_scheduler_exit(
        monkeypatch, capsys):
    """ps-lite's scheduler leaves (code 0) once every worker finalised the
    kvstore, before the worker processes end: no failure, unless the
    workers still run a grace period later."""
    procs = [('scheduler', _spawn('pass')), ('server', _spawn('pass')),
             ('worker', _spawn('import time; time.sleep(0.5)'))]
    hung = [('scheduler', _spawn('pass')), ('worker', _spawn(SLEEP))]
    try:
        assert launch_lib._wait(procs, deadline=time.monotonic() + 30,
                              timeout=30) == 0
        monkeypatch.setattr(launch_lib, 'SERVER_GRACE', 0.5)
        begin = time.monotonic()
        assert launch_lib._wait(hung, deadline=time.monotonic() + 30,
                              timeout=30) == 1
        assert time.monotonic() - begin < 15
    finally:
        launch_lib._stop([p for _, p in procs + hung])
    assert 'left 0.5 s ago and workers still run' in capsys.readouterr().err
    assert not any(_alive(p.pid) for _, p in procs + hung)


@pytest.mark.slow
def test_dist_sync_two_workers_on_loopback(tmp_path):
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'caser_gluon.launcher', '--workers',
           '2', '--servers', '1', '--timeout', '150', '--',
           '--epochs', '2', '--average-last', '2', '--batch-size', '4096',
           '--devices', 'cpu', '--quiet', '--out', str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('final: epoch 2 ') == 2
    ranks = [mx.nd.load(str(out / f'caser-rank{r}.params'))
             for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:        # dist_sync: the servers hold one copy
        onp.testing.assert_array_equal(ranks[0][key].asnumpy(),
                                       ranks[1][key].asnumpy())
    metrics = json.loads((out / 'metrics.json').read_text())
    assert len(metrics) == 2
    assert 0.05 < metrics[0]['hit_rate'] < 0.6
    assert 0.6 < metrics[0]['auc'] < 0.95
    result = json.loads((out / 'result.json').read_text())
    assert result['averaged_epochs'] == 2     # the mean, on the servers' run
    assert 0.05 < result['hit_rate'] < 0.6
    config = json.loads((out / 'config.json').read_text())
    assert config['kvstore'] == 'dist_sync'
    assert config['dist_workers'] == 2
    assert (out / 'caser.params').is_file()
