"""Tests of caser_gluon.experiments: the baseline, the grid and the report."""
import json
import math

import mxnet as mx
import numpy as np
import pytest
from helpers import error_line, run_cli, write_ratings

from caser_gluon import cli, experiments
from caser_gluon.config import (
    DataConfig,
    RunConfig,
    from_flat,
    to_flat,
    with_preset,
)
from caser_gluon.data import SeqDataset
from caser_gluon.interactions import ItemSets
from caser_gluon.prepare import load_data
from caser_gluon.runs import RunFolder


def test_popularity_scores_count_training_users():
    users = np.array([0, 0, 0, 1, 1, 1])
    items = np.array([0, 1, 2, 1, 2, 3])
    cand = ItemSets.from_pairs(users, items, num_users=3, num_items=5)
    ds = SeqDataset(users, items, 2, 3, 5, cand)
    scores = experiments.popularity_scorer(ds)(1, 3)
    assert scores.shape == (2, 5)
    assert scores.tolist() == [[1, 2, 2, 1, 0]] * 2


def test_every_config_is_a_valid_run():
    fields = set(to_flat(RunConfig()))
    for name, values in experiments.CONFIGS.items():
        if values is None:
            continue
        assert set(values) <= fields, name
        config = from_flat(with_preset(dict(values)))
        cli.check_config(config)            # no flag combination refused
        flat = to_flat(config)
        for key, value in values.items():
            assert flat[key] == value, (name, key)
    assert set(experiments.QUICK_CONFIGS) <= set(experiments.CONFIGS)
    assert experiments.CONFIGS['most popular'] is None


def test_summarise_and_difference_by_hand():
    records = [{'name': 'a', 'seed': s, 'epochs': 8, 'hr@10': h,
                'ndcg@10': 0.1, 'hit_rate': hr50, 'auc': 0.9,
                'train_seconds': 2.0}
               for s, h, hr50 in [(0, 0.1, 0.4), (1, 0.3, 0.6)]]
    records.append(dict(records[0], name='b', hit_rate=0.5))
    summary = experiments.summarise(records)
    assert summary['a']['hr@10'] == pytest.approx((0.2, math.sqrt(0.02),
                                                   2))
    assert summary['a']['epochs'] == (8.0, 0.0, 2)
    assert summary['b']['hit_rate'] == (0.5, 0.0, 1)
    delta, se, counts = experiments.difference(summary['a'], summary['b'])
    assert delta == pytest.approx(0.0) and not counts   # one seed in b
    strong = {'hit_rate': (0.5, 0.01, 3)}
    delta, se, counts = experiments.difference(strong,
                                               {'hit_rate': (0.4, 0.01, 3)})
    assert delta == pytest.approx(0.1)
    assert se == pytest.approx(math.sqrt(2 * 0.01 ** 2 / 3)) and counts


def test_write_report(tmp_path):
    records = [{'name': name, 'seed': 0, 'epochs': 1, 'hr@10': 0.1,
                'ndcg@10': 0.05, 'hit_rate': 0.3, 'auc': math.nan,
                'train_seconds': 1.0}
               for name in ['caser (chapter)', 'most popular']]
    folder = RunFolder(tmp_path, prefix='experiments',
                       files=experiments.REPORT_FILES)
    path = experiments.write_report(records, folder, seeds=[0])
    folder.close()
    report = path.read_text()
    assert '| caser (chapter) | 1 | 0.100 ± 0.000 |' in report
    assert '| most popular |' in report
    saved = json.loads((tmp_path / 'results.json').read_text(),
                       parse_constant=pytest.fail)
    assert saved[0]['auc'] is None and saved[1]['name'] == 'most popular'
    assert (tmp_path / 'hit_rate.png').stat().st_size > 0


def test_run_config_on_a_small_ratings_file(tmp_path):
    write_ratings(tmp_path / 'r.tsv', num_users=30, num_items=40,
                  per_user=12)
    chapter = load_data(DataConfig(ratings=str(tmp_path / 'r.tsv')), L=5,
                        seed=0)
    config = RunConfig().replace(d=0, epochs=1, batch_size=64, seed=2)
    record = experiments.run_config('vertical only (d=0)', chapter=chapter,
                                    config=config, devices=[mx.cpu()])
    assert record['name'] == 'vertical only (d=0)' and record['seed'] == 2
    assert record['eval_users'] == 30 and record['train_seconds'] > 0
    assert 0 <= record['hr@10'] <= record['hit_rate'] <= 1
    popular = experiments.run_config('most popular', chapter=chapter,
                                     config=config, devices=[mx.cpu()])
    assert 0 <= popular['hr@10'] <= 1 and popular['eval_users'] == 30


def test_an_existing_report_is_kept_without_overwrite(tmp_path, capsys):
    (tmp_path / 'RESULTS.md').write_text('mine')
    assert run_cli(['experiments', '--quick', '--out', str(tmp_path)]) == 2
    line = error_line(capsys.readouterr().err, 'experiments')
    assert 'already holds a run (RESULTS.md)' in line
    assert (tmp_path / 'RESULTS.md').read_text() == 'mine'


@pytest.mark.slow
def test_quick_grid_writes_report(tmp_path, capsys):
    assert run_cli(['experiments', '--quick', '--only', 'most popular',
                    'vertical only (d=0)', '--out', str(tmp_path)]) == 0
    report = (tmp_path / 'RESULTS.md').read_text()
    assert '| most popular |' in report and '| vertical only (d=0) |' in report
    assert (tmp_path / 'hit_rate.png').stat().st_size > 0
    records = json.loads((tmp_path / 'results.json').read_text())
    assert {r['name'] for r in records} == {'most popular',
                                            'vertical only (d=0)'}
    for r in records:
        assert r['epochs'] == 1 and r['seed'] == 0
        assert 0 <= r['hr@10'] <= r['hit_rate'] <= 1
        assert 0.5 < r['auc'] < 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        'report': str(tmp_path / 'RESULTS.md')}


def test_run_config_evaluates_the_average_of_the_last_epochs(tmp_path,
                                                             monkeypatch):
    write_ratings(tmp_path / 'r.tsv', num_users=30, num_items=40,
                  per_user=12)
    chapter = load_data(DataConfig(ratings=str(tmp_path / 'r.tsv')), L=5,
                        seed=0)
    config = RunConfig().replace(epochs=3, average_last=2, batch_size=64)
    epochs, evaluated = {}, {}

    def values(net):
        return {k: p.data().asnumpy().copy()
                for k, p in net._collect_params_with_prefix().items()}

    def fit(net, *args, on_epoch, **kwargs):
        def record(r):
            epochs[r['epoch']] = values(net)
            on_epoch(r)
        return real_fit(net, *args, on_epoch=record, **kwargs)

    def evaluate_model(net, **kwargs):
        evaluated.update(values(net))
        return real_evaluate(net, **kwargs)
    real_fit, real_evaluate = experiments.fit, experiments.evaluate_model
    monkeypatch.setattr(experiments, 'fit', fit)
    monkeypatch.setattr(experiments, 'evaluate_model', evaluate_model)
    experiments.run_config('caser (chapter)', chapter=chapter,
                           config=config, devices=[mx.cpu()])
    assert sorted(epochs) == [1, 2, 3]
    for name, value in evaluated.items():
        mean = (epochs[2][name] + epochs[3][name]) / 2
        assert np.allclose(value, mean, atol=1e-6), name
