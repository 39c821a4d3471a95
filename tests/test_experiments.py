"""Tests of caser_gluon.experiments: the baseline and the report."""
import json

import numpy as np
import pytest

from caser_gluon import experiments
from caser_gluon.data import SeqDataset


def test_popularity_scores_count_training_users():
    users = np.array([0, 0, 0, 1, 1, 1])
    items = np.array([0, 1, 2, 1, 2, 3])
    cand = {0: [0, 1, 2], 1: [1, 2, 3]}
    ds = SeqDataset(users, items, 2, 3, 5, cand)
    scores = experiments.popularity_scores(ds, 3)
    assert scores.shape == (3, 5)
    assert scores[2].tolist() == [1, 2, 2, 1, 0]


def test_every_config_is_well_formed():
    for model_kwargs, loop_kwargs in experiments.CONFIGS.values():
        assert model_kwargs is None or isinstance(model_kwargs, dict)
        assert set(loop_kwargs) <= {'targets', 'loss', 'num_negatives'}
    assert set(experiments.QUICK_CONFIGS) <= set(experiments.CONFIGS)


@pytest.mark.slow
def test_quick_grid_writes_report(tmp_path, capsys):
    experiments.main(['--quick', '--only', 'most popular',
                      'vertical only (d=0)', '--out', str(tmp_path)])
    report = (tmp_path / 'RESULTS.md').read_text()
    assert '| most popular |' in report and '| vertical only (d=0) |' in report
    assert (tmp_path / 'hit_rate.png').stat().st_size > 0
    records = json.loads((tmp_path / 'results.json').read_text())
    assert {r['name'] for r in records} == {'most popular',
                                            'vertical only (d=0)'}
    for r in records:
        assert 0 <= r['hr@10'] <= r['hit_rate'] <= 1
        assert 0.5 < r['auc'] < 1
