"""Tests of caser_gluon.recommend and the caser-gluon command."""
import json

import numpy as onp
import pytest
from mxnet import np

from caser_gluon import cli, recommend
from caser_gluon import train as train_lib


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    train_lib.main(['--epochs', '1', '--quiet', '--out', str(out)])
    return out


@pytest.mark.slow
def test_user_recommendations_are_unseen_sorted_and_scored(run_dir):
    net, _, chapter = recommend.load_run(run_dir)
    result = recommend.recommend(net, chapter, user=42, n=10)
    ds = chapter['train_seq_data']
    ids = [i - 1 for i, _ in result['top']]
    scores = [s for _, s in result['top']]
    assert len(ids) == 10 and scores == sorted(scores, reverse=True)
    assert not ds.seen[41, ids].any()
    assert result['history'] == [int(i) + 1 for i in ds.test_seq[41]]
    direct = net(np.array([41] * 10), np.array(onp.repeat(
        ds.test_seq[41:42], 10, axis=0)), np.array(ids)).asnumpy()
    onp.testing.assert_allclose(direct, scores, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_cli_recommend_json_and_errors(run_dir, capsys):
    cli.main(['recommend', '--run', str(run_dir), '--items', '50,172,181',
              '-n', '3', '--json'])
    result = json.loads(capsys.readouterr().out)
    assert result['history'] == [50, 172, 181]
    assert len(result['top']) == 3
    assert not {i for i, _ in result['top']} & {50, 172, 181}
    for argv, message in [(['--user', '0'], 'valid users are 1..943'),
                          (['--items', '5,1683'], 'valid items are 1..1682'),
                          (['--items', 'a,b'], 'comma-separated integers')]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(['recommend', '--run', str(run_dir)] + argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_missing_run_folder(tmp_path):
    with pytest.raises(recommend.RecommendError, match='config.json'):
        recommend.load_run(tmp_path)
