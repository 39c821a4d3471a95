"""Tests of scaling out: several devices, several processes.

* Two CPU contexts take the same step as one context on the same batch
  (``kvstore`` ``device`` and ``local``).
* :func:`caser_gluon.distributed.shard_dataset` splits users, not windows,
  and gives every worker the same number of whole batches.
* The launcher runs a scheduler, a server and two ``dist_sync`` workers on
  127.0.0.1 (slow), and stops everything when a worker fails.
"""
import json
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from caser_gluon import distributed as dist_lib
from caser_gluon import train as train_lib
from caser_gluon.data import SeqDataset

NUM_USERS, NUM_ITEMS, L = 12, 40, 4


def small_batch(rng, size=16):
    """A batch ``(users, seqs, items)`` of the small Caser's ids."""
    users = rng.integers(0, NUM_USERS, size).astype(onp.int32)
    seqs = rng.integers(0, NUM_ITEMS + 1, (size, L)).astype(onp.int32)
    items = rng.integers(0, NUM_ITEMS, (size, 2)).astype(onp.int32)
    return users, seqs, items


def one_step(devices, batch, init, *, kvstore, optimizer):
    """Parameters (NumPy) after one trainer step of a small Caser."""
    net = train_lib.build_net(num_users=NUM_USERS, num_items=NUM_ITEMS,
                              devices=devices, num_factors=6, L=L, d=3,
                              d_prime=2, drop_ratio=0, hybridize=True)
    for param, value in zip(net.collect_params().values(), init):
        param.set_data(np.array(value))
    trainer = train_lib.make_trainer(net, lr=0.1, optimizer=optimizer,
                                     kvstore=kvstore)
    shards = [gluon.utils.split_and_load(np.array(a), devices,
                                         even_split=False) for a in batch]
    with autograd.record():
        losses = [train_lib.bpr_loss(*net(u, s, i).T)
                  for u, s, i in zip(*shards)]
    for loss in losses:
        loss.backward()
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
    ref = train_lib.build_net(num_users=NUM_USERS, num_items=NUM_ITEMS,
                              devices=[mx.cpu()], num_factors=6, L=L, d=3,
                              d_prime=2, drop_ratio=0)
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
    with pytest.raises(SystemExit) as exit_info:
        train_lib.main(['--kvstore', 'dist_sync', '--epochs', '1',
                        '--quiet'])
    assert exit_info.value.code == 2
    assert 'python -m caser_gluon.distributed' in capsys.readouterr().err


def test_train_args_get_kvstore_and_one_out():
    argv = dist_lib._train_argv(['--epochs', '1'], kvstore='dist_async')
    assert argv[:4] == ['--epochs', '1', '--kvstore', 'dist_async']
    assert argv[4] == '--out' and argv[5].startswith('runs')
    kept = ['--kvstore=dist_sync', '--out', 'x']
    assert dist_lib._train_argv(kept, kvstore='dist_async') == kept


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_launcher_stops_everything_when_a_worker_fails(tmp_path,
                                                       monkeypatch):
    started = []
    popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        p = popen(*args, **kwargs)
        started.append(p.pid)
        return p

    monkeypatch.setattr(subprocess, 'Popen', recording_popen)
    begin = time.monotonic()
    # --epochs 0 makes every worker exit with code 2 before it connects,
    # so the scheduler and the server would wait forever
    code = dist_lib.launch(['--epochs', '0', '--out', str(tmp_path)],
                           workers=2, servers=1, timeout=60)
    assert code == 2
    assert time.monotonic() - begin < 45
    assert len(started) == 4
    assert not any(_alive(pid) for pid in started)


@pytest.mark.slow
def test_dist_sync_two_workers_on_loopback(tmp_path):
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'caser_gluon.distributed', '--workers',
           '2', '--servers', '1', '--timeout', '150', '--',
           '--epochs', '1', '--batch-size', '4096', '--devices', 'cpu',
           '--quiet', '--out', str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('final: test hit rate@50') == 2
    ranks = [mx.nd.load(str(out / f'caser-rank{r}.params'))
             for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:        # dist_sync: the servers hold one copy
        onp.testing.assert_array_equal(ranks[0][key].asnumpy(),
                                       ranks[1][key].asnumpy())
    metrics = json.loads((out / 'metrics.json').read_text())
    assert len(metrics) == 1
    assert 0.05 < metrics[0]['hit_rate'] < 0.6
    assert 0.6 < metrics[0]['auc'] < 0.95
    config = json.loads((out / 'config.json').read_text())
    assert config['kvstore'] == 'dist_sync'
    assert config['dist_workers'] == 2
    assert (out / 'caser.params').is_file()
