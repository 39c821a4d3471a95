"""Tests of caser_gluon.runs: the run folder, its lock and checkpoints."""
import json
import math
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from caser_gluon import runs
from caser_gluon.config import ModelConfig
from caser_gluon.runs import RunError, RunFolder, load_params, strict_json
from caser_gluon.train import make_trainer
from caser_gluon.zoo import build_model


def test_refuses_a_folder_holding_a_run_unless_overwrite(tmp_path):
    (tmp_path / 'metrics.json').write_text('[]')
    (tmp_path / 'checkpoint-e3.params').write_text('old')
    (tmp_path / 'notes.txt').write_text('mine')
    with pytest.raises(RunError, match=r'already holds a run \(metrics.json'
                                       r'\); pass --overwrite'):
        RunFolder(tmp_path)
    folder = RunFolder(tmp_path, overwrite=True)    # the lock was released
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            '.lock', 'notes.txt']
    finally:
        folder.close()
    (tmp_path / 'config.json').write_text('{}')
    folder = RunFolder(tmp_path, resume=True)       # resume keeps the run
    folder.close()
    assert (tmp_path / 'config.json').read_text() == '{}'


def test_fresh_names_in_the_same_second_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs.time, 'strftime',
                        lambda fmt: fmt.replace('%Y%m%d-%H%M%S', 'NOW'))
    folders = [RunFolder() for _ in range(3)]
    try:
        assert [str(f.dir) for f in folders] == [
            'runs/caser-NOW', 'runs/caser-NOW-2', 'runs/caser-NOW-3']
        assert RunFolder(prefix='experiments').dir.name == 'experiments-NOW'
    finally:
        for folder in folders:
            folder.close()


def test_a_locked_folder_is_refused(tmp_path):
    first = RunFolder(tmp_path / 'run')
    # flock is per open file description: a second RunFolder in this very
    # process opens the lock file again and is refused like a process
    with pytest.raises(RunError, match='another process is writing'):
        RunFolder(tmp_path / 'run')
    first.close()
    RunFolder(tmp_path / 'run').close()


def test_a_folder_locked_by_another_process_is_refused(tmp_path):
    (tmp_path / 'run').mkdir()
    code = ('import fcntl, os, time\n'
            f'fd = os.open({str(tmp_path / "run" / ".lock")!r}, '
            'os.O_RDWR | os.O_CREAT)\n'
            'fcntl.flock(fd, fcntl.LOCK_EX)\n'
            'print("locked", flush=True)\n'
            'time.sleep(60)\n')
    holder = subprocess.Popen([sys.executable, '-c', code],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(RunError, match='another process'):
            RunFolder(tmp_path / 'run')
    finally:
        holder.kill()
        holder.wait()
    RunFolder(tmp_path / 'run').close()


def test_out_that_is_a_file_or_under_a_file(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(RunError, match='is a file, not a folder'):
        RunFolder(tmp_path / 'file')
    with pytest.raises(RunError) as info:
        RunFolder(tmp_path / 'file' / 'run' / 'deeper')
    assert f'{tmp_path / "file"} is a file' in str(info.value)


def test_a_failed_run_leaves_no_empty_folder(tmp_path):
    RunFolder(tmp_path / 'new').close()
    assert not (tmp_path / 'new').exists()
    (tmp_path / 'old').mkdir()
    RunFolder(tmp_path / 'old').close()
    assert (tmp_path / 'old').is_dir()


def test_metrics_are_strict_json_and_csv(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_config({'lr': 0.04, 'bad': math.nan})
    folder.add({'epoch': 1, 'train_loss': 0.5, 'auc': math.nan})
    folder.add({'epoch': 2, 'train_loss': math.inf, 'auc': 0.75,
                'hr@10': 0.1})
    folder.plot()
    folder.close()
    metrics = json.loads((tmp_path / 'metrics.json').read_text(),
                         parse_constant=pytest.fail)
    assert metrics == [{'epoch': 1, 'train_loss': 0.5, 'auc': None},
                       {'epoch': 2, 'train_loss': None, 'auc': 0.75,
                        'hr@10': 0.1}]
    assert json.loads((tmp_path / 'config.json').read_text()) == {
        'lr': 0.04, 'bad': None}
    lines = (tmp_path / 'metrics.csv').read_text().splitlines()
    assert lines[0] == 'epoch,train_loss,auc,hr@10'
    assert lines[2] == '2,inf,0.75,0.1'
    assert (tmp_path / 'metrics.png').stat().st_size > 0
    assert strict_json([1.5, {'a': -math.inf}]) == (
        '[\n  1.5,\n  {\n    "a": null\n  }\n]\n')


def test_a_worker_that_does_not_own_the_folder_writes_nothing(tmp_path):
    folder = RunFolder(tmp_path / 'run', owner=False)
    folder.write_config({'a': 1})
    folder.add({'epoch': 1})
    folder.save_arrays('recommend.npz', x=onp.arange(3))
    folder.plot()
    folder.close()
    assert folder.history == [{'epoch': 1}]
    assert not (tmp_path / 'run').exists()


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------

def small_net(num_factors=4):
    net = build_model(ModelConfig(num_factors=num_factors, L=2, d=2,
                                  d_prime=1), num_users=3, num_items=10,
                      devices=[mx.cpu()], hybridize=False)
    return net, make_trainer(net, lr=0.01, wd=0.0, optimizer='adam',
                             kvstore='device')


def params_of(net):
    """Parameter values in order (names differ between instances)."""
    return [p.data().asnumpy().copy() for p in net.collect_params().values()]


def shift(net, by):
    for p in net.collect_params().values():
        p.set_data(p.data() + by)


def commit(folder, net, trainer, epoch):
    folder.add({'epoch': epoch})
    folder.save_checkpoint(net, trainer, epoch=epoch)
    return params_of(net)


def assert_params(net, expected):
    got = params_of(net)
    assert len(got) == len(expected)
    for value, ref in zip(got, expected):
        onp.testing.assert_array_equal(value, ref)


def test_checkpoint_round_trip_keeps_only_the_last_epoch(tmp_path):
    net, trainer = small_net()
    folder = RunFolder(tmp_path)
    commit(folder, net, trainer, 1)
    shift(net, 1.0)
    second = commit(folder, net, trainer, 2)
    folder.close()
    assert sorted(p.name for p in tmp_path.glob('checkpoint*')) == [
        'checkpoint-e2.params', 'checkpoint-e2.states', 'checkpoint.json']
    fresh, fresh_trainer = small_net()
    folder = RunFolder(tmp_path, resume=True)
    assert folder.load_checkpoint(fresh, fresh_trainer,
                                  devices=[mx.cpu()]) == 2
    folder.close()
    assert folder.history == [{'epoch': 1}, {'epoch': 2}]
    assert_params(fresh, second)


def test_a_kill_before_the_manifest_leaves_the_previous_epoch(tmp_path):
    net, trainer = small_net()
    folder = RunFolder(tmp_path)
    first = commit(folder, net, trainer, 1)
    # killed while committing epoch 2: its files are (partly) written,
    # checkpoint.json still names epoch 1
    shift(net, 1.0)
    net.save_parameters(str(tmp_path / 'checkpoint-e2.params'))
    (tmp_path / 'checkpoint-e2.states').write_bytes(b'\0' * 10)
    folder.close()
    fresh, fresh_trainer = small_net()
    folder = RunFolder(tmp_path, resume=True)
    assert folder.load_checkpoint(fresh, fresh_trainer,
                                  devices=[mx.cpu()]) == 1
    folder.close()
    assert_params(fresh, first)


@pytest.mark.parametrize('damage', ['truncate', 'remove'])
def test_a_damaged_checkpoint_file_is_named(tmp_path, damage):
    net, trainer = small_net()
    folder = RunFolder(tmp_path)
    commit(folder, net, trainer, 1)
    path = tmp_path / 'checkpoint-e1.params'
    if damage == 'truncate':
        path.write_bytes(path.read_bytes()[:50])
    else:
        path.unlink()
    with pytest.raises(RunError) as info:
        folder.load_checkpoint(net, trainer, devices=[mx.cpu()])
    folder.close()
    assert str(info.value).startswith(f'{path}: ')
    assert ('truncated' if damage == 'truncate' else 'missing') in str(
        info.value)


def test_no_or_unreadable_manifest(tmp_path):
    net, trainer = small_net()
    folder = RunFolder(tmp_path)
    with pytest.raises(RunError, match='no checkpoint to resume from'):
        folder.load_checkpoint(net, trainer, devices=[mx.cpu()])
    for text, message in [('{"epoch": 1', 'unreadable'),
                          ('[]', 'unreadable'),
                          ('{"epoch": 1}', "unreadable \\(no 'history'")]:
        (tmp_path / 'checkpoint.json').write_text(text)
        with pytest.raises(RunError, match=message):
            folder.load_checkpoint(net, trainer, devices=[mx.cpu()])
    folder.close()


def test_a_checkpoint_of_another_model_does_not_fit(tmp_path):
    net, trainer = small_net(num_factors=4)
    folder = RunFolder(tmp_path)
    commit(folder, net, trainer, 1)
    other, other_trainer = small_net(num_factors=6)
    with pytest.raises(RunError, match='checkpoint-e1.params: does not fit'
                                       ' this model'):
        folder.load_checkpoint(other, other_trainer, devices=[mx.cpu()])
    folder.close()
    bad = tmp_path / 'bad.params'
    bad.write_bytes(b'not parameters')
    with pytest.raises(RunError, match='bad.params: does not fit'):
        load_params(net, bad, device=mx.cpu())
    net.save_parameters(str(tmp_path / 'good.params'))
    shift(net, 2.0)
    load_params(net, tmp_path / 'good.params', device=mx.cpu())
    assert float(np.abs(net.b.weight.data()).max()) < 1.0
