"""``--average-last N``: the run's model is the mean of its last epochs.

Checked against the epochs' own parameters, saved by a callback and
averaged with NumPy; a resumed run averages what an uninterrupted one does.
"""
import json

import mxnet as mx
import numpy as onp
import pytest
from helpers import SMALL, error_line, interrupt_at, run_cli

from caser_gluon import pipeline
from caser_gluon.averaging import ParameterAverage
from caser_gluon.config import ModelConfig
from caser_gluon.zoo import build_model


def _net(seed):
    mx.random.seed(seed)
    return build_model(ModelConfig(num_factors=4), num_users=5, num_items=7,
                       devices=[mx.cpu()])


def _values(net):
    return {k: p.data().asnumpy().copy()
            for k, p in net._collect_params_with_prefix().items()}


def test_mean_of_the_epochs_from_first_epoch_on():
    nets = [_net(seed) for seed in range(4)]          # "epochs" 1..4
    average = ParameterAverage(first_epoch=2)
    for epoch, net in enumerate(nets, start=1):
        average.update(net, epoch)
    assert average.count == 3
    target = _net(9)
    average.copy_to(target)
    expected = [_values(net) for net in nets[1:]]
    for name, value in _values(target).items():
        assert onp.allclose(value, onp.mean([e[name] for e in expected], 0),
                            atol=1e-7), name
    restored = ParameterAverage(first_epoch=2)
    restored.load_state(dict(average.state()), epoch=4)
    assert restored.count == 3
    with pytest.raises(ValueError, match='holds 3 epochs from epoch 2'):
        ParameterAverage(first_epoch=2).load_state(average.state(), epoch=5)
    with pytest.raises(ValueError, match='would hold epochs 3-4'):
        ParameterAverage(first_epoch=3).load_state(average.state(), epoch=4)
    other = _net(8)
    restored.copy_to(other)
    assert all((a == b).all() for a, b in zip(_values(other).values(),
                                               _values(target).values()))


def test_nothing_averaged_cannot_be_copied():
    with pytest.raises(ValueError, match='no epoch'):
        ParameterAverage(first_epoch=3).copy_to(_net(0))


def _saving_epochs(monkeypatch, store):
    """Keep a copy of the parameters after each epoch of the next run."""
    original = pipeline.EpochTracker.__call__

    def call(self, record):
        store[record['epoch']] = _values(self.net)
        return original(self, record)
    monkeypatch.setattr(pipeline.EpochTracker, '__call__', call)


def test_run_result_is_the_average_of_the_last_epochs(ratings, tmp_path,
                                                      monkeypatch):
    epochs = {}
    _saving_epochs(monkeypatch, epochs)
    out = tmp_path / 'run'
    assert run_cli(['train', '--ratings', str(ratings), '--out', str(out),
                    '--epochs', '4', '--average-last', '3', *SMALL]) == 0
    net = build_model(ModelConfig(num_factors=8), num_users=24,
                      num_items=30, devices=[mx.cpu()])
    net.load_parameters(str(out / 'caser.params'), ctx=mx.cpu())
    for name, value in _values(net).items():
        mean = onp.mean([epochs[e][name] for e in (2, 3, 4)], axis=0)
        assert onp.allclose(value, mean, atol=1e-6), name
    result = json.loads((out / 'result.json').read_text())
    assert result['averaged_epochs'] == 3 and result['epoch'] == 4
    last = json.loads((out / 'metrics.json').read_text())[-1]
    assert result['hit_rate'] != last['hit_rate'] or \
        result['auc'] != last['auc']      # not the last epoch's model


def test_resumed_average_equals_one_run(ratings, tmp_path, monkeypatch,
                                        capsys):
    """Interrupted inside the averaged epochs (after epoch 3 of 5, the
    mean of 2 and 3 in its checkpoint), resumed: the same model."""
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    flags = ['--ratings', str(ratings), '--epochs', '5', '--average-last',
             '4', *SMALL]
    assert run_cli(['train', '--out', str(whole), *flags]) == 0
    interrupt_at(monkeypatch, 4)
    assert run_cli(['train', '--out', str(part), *flags]) == 130
    monkeypatch.undo()
    assert run_cli(['train', '--resume', str(part), '--quiet']) == 0
    a = json.loads((whole / 'result.json').read_text())
    b = json.loads((part / 'result.json').read_text())
    assert a == b and a['averaged_epochs'] == 4
    # the window cannot move once averaging has begun
    assert run_cli(['train', '--resume', str(part), '--epochs', '7',
                    '--quiet']) == 2
    assert 'keep --epochs and --average-last' in capsys.readouterr().err


def test_resume_cannot_move_the_window_over_past_epochs(
        ratings, tmp_path, monkeypatch, capsys):
    """Stopped after epoch 2 of 6 (window 4-6, nothing averaged yet),
    resumed with --epochs 3: its window 1-3 has passed unaveraged."""
    out = tmp_path / 'run'
    flags = ['--ratings', str(ratings), '--out', str(out), *SMALL]
    interrupt_at(monkeypatch, 3)
    assert run_cli(['train', *flags, '--epochs', '6',
                    '--average-last', '3']) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert run_cli(['train', '--resume', str(out), '--epochs', '3',
                    '--quiet']) == 2
    line = error_line(capsys.readouterr().err, 'train')
    assert 'holds 0 epochs' in line and 'epochs 1-2' in line
    assert run_cli(['train', '--resume', str(out), '--epochs', '5',
                    '--quiet']) == 0      # window 3-5: none has passed
    assert json.loads((out / 'result.json').read_text())[
        'averaged_epochs'] == 3


@pytest.mark.parametrize('flags, clash', [
    (['--epochs', '2', '--average-last', '3'], '--epochs 2'),
    (['--average-last', '2', '--patience', '2', '--split', 'last-valid'],
     '--patience'),
    (['--average-last', '2', '--loop', 'd2l'], '--loop d2l'),
    (['--average-last', '2', '--evaluator', 'd2l'], '--evaluator d2l'),
    (['--preset', 'best', '--epochs', '5'], '--epochs 5'),
])
def test_average_last_misuse_is_one_line(ratings, tmp_path, capsys, flags,
                                         clash):
    assert run_cli(['train', '--ratings', str(ratings), '--out',
                    str(tmp_path / 'x'), *SMALL, *flags]) == 2
    line = error_line(capsys.readouterr().err, 'train')
    assert f'cannot go with {clash};' in line
    assert '--average-last 0 turns it off' in line


def test_average_of_a_model_on_two_devices():
    devices = [mx.cpu(0), mx.cpu(1)]
    nets = []
    for seed in (0, 1):
        mx.random.seed(seed)
        nets.append(build_model(ModelConfig(num_factors=4), num_users=5,
                                num_items=7, devices=devices))
    average = ParameterAverage.last(2, num_epochs=2)
    for epoch, net in enumerate(nets, start=1):
        average.update(net, epoch)
    a, b = _values(nets[0]), _values(nets[1])
    average.copy_to(nets[0])
    for name, param in nets[0]._collect_params_with_prefix().items():
        first, second = (p.asnumpy() for p in param.list_data())
        assert (first == second).all(), name
        assert onp.allclose(first, (a[name] + b[name]) / 2), name


def test_validation_and_test_metrics_are_the_averaged_models(
        ratings, tmp_path):
    out = tmp_path / 'run'
    assert run_cli(['train', '--ratings', str(ratings), '--out', str(out),
                    '--split', 'last-valid', '--epochs', '3',
                    '--average-last', '2', *SMALL]) == 0
    result = json.loads((out / 'result.json').read_text())
    assert result['averaged_epochs'] == 2 and result['epoch'] == 3
    history = json.loads((out / 'metrics.json').read_text())
    assert [r['epoch'] for r in history] == [1, 2, 3]
    # the averaged model's validation metrics, not one epoch's
    assert 'valid_ndcg@10' in result
    assert all(result['valid_auc'] != r['valid_auc'] for r in history)
