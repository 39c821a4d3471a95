"""Tests of caser_gluon.recommend and ``caser-gluon recommend``.

One run of the chapter's recipe on ML-100K (1 epoch) also checks the
chapter's numbers; a run on a small ratings file checks the file's ids.
"""
import json

import numpy as onp
import pytest
from helpers import error_line, run_cli, write_ratings
from mxnet import np

from caser_gluon import recommend


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('run') / 'ml100k'
    assert run_cli(['train', '--epochs', '1', '--quiet', '--out',
                    str(out)]) == 0
    return out


@pytest.fixture(scope='module')
def ratings_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ratings')
    ratings = folder / 'ratings.tsv'
    data = write_ratings(ratings)
    out = folder / 'run'
    assert run_cli(['train', '--ratings', str(ratings), '--epochs', '1',
                    '--batch-size', '32', '--quiet', '--out', str(out)]) == 0
    return dict(data, out=out, ratings=ratings)


def test_chapter_numbers_after_one_epoch(run_dir):
    metrics = json.loads((run_dir / 'metrics.json').read_text())
    assert len(metrics) == 1
    assert 0.1 < metrics[0]['hit_rate'] < 0.6
    assert 0.7 < metrics[0]['auc'] < 0.95
    assert metrics[0]['eval_users'] == 943


def all_scores(net, user, seq, num_items):
    """Scores of every item for one user, from the net's forward pass."""
    return net(np.array([user] * num_items),
               np.array(onp.repeat(seq[None], num_items, axis=0)),
               np.array(onp.arange(num_items))).asnumpy()


def test_user_recommendations_are_unseen_sorted_and_scored(run_dir):
    net, state = recommend.load_run(run_dir)
    result = recommend.recommend(net, state, user=42, n=10)
    seq = state['test_seq'][41]
    assert result['history'] == [int(i) + 1 for i in seq if i != 1682]
    indptr, indices = state['seen']
    seen = indices[indptr[41]:indptr[42]]
    scores = all_scores(net, 41, seq, 1682)
    scores[seen] = -onp.inf
    best = onp.lexsort((onp.arange(1682), -scores))[:10]
    assert [i for i, _ in result['top']] == (best + 1).tolist()
    onp.testing.assert_allclose([s for _, s in result['top']],
                                scores[best], rtol=1e-4, atol=1e-5)


def test_cli_recommend_json_text_and_errors(run_dir, capsys):
    assert run_cli(['recommend', '--run', str(run_dir), '--items',
                    '50,172,181', '-n', '3', '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['history'] == [50, 172, 181]
    assert len(result['top']) == 3
    assert not {i for i, _ in result['top']} & {50, 172, 181}
    assert run_cli(['recommend', '--run', str(run_dir), '--user', '1',
                    '-n', '2']) == 0
    text = capsys.readouterr().out
    assert 'recommended:' in text and ' 1. ' in text and ' 2. ' in text
    for argv, message in [
            (['--user', '0'], 'valid users are 1..943'),
            (['--user', '944'], 'valid users are 1..943'),
            (['--items', '5,1683'], 'valid items are 1..1682'),
            (['--items', 'a,b'], "unknown item 'a'"),
            (['--items', ','], '--items needs at least one item')]:
        assert run_cli(['recommend', '--run', str(run_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert message in error_line(err, 'recommend')
        assert len(err.strip().splitlines()) == 1


def test_missing_or_unfinished_run(tmp_path, run_dir, capsys):
    assert run_cli(['recommend', '--run', str(tmp_path), '--user', '1']) == 2
    line = error_line(capsys.readouterr().err, 'recommend')
    assert str(tmp_path / 'config.json') in line
    unfinished = tmp_path / 'unfinished'
    unfinished.mkdir()
    for name in ['config.json', 'recommend.npz']:
        (unfinished / name).write_bytes((run_dir / name).read_bytes())
    with pytest.raises(recommend.RecommendError,
                       match='caser.params: missing'):
        recommend.load_run(unfinished)


def test_ratings_run_speaks_the_file_ids(ratings_run, capsys):
    out, history = ratings_run['out'], ratings_run['history']
    item_ids = set(ratings_run['item_ids'].tolist())
    assert run_cli(['recommend', '--run', str(out), '--user', '101',
                    '--json', '-n', '5']) == 0
    result = json.loads(capsys.readouterr().out)
    training = history[101][:-1]        # the last one is held out
    assert result['history'] == training[-5:]
    top = [i for i, _ in result['top']]
    assert len(top) == 5 and set(top) <= item_ids
    assert not set(top) & set(training)
    assert run_cli(['recommend', '--run', str(out), '--user', '101',
                    '-n', '5']) == 0
    assert f'item {top[0]}' in capsys.readouterr().out
    # the ratings file may go: the run kept what it needs
    ratings_run['ratings'].unlink()
    assert run_cli(['recommend', '--run', str(out), '--user', '101',
                    '--json', '-n', '5']) == 0
    assert json.loads(capsys.readouterr().out) == result
    assert run_cli(['recommend', '--run', str(out), '--items',
                    '5011,5001', '--json', '-n', '3']) == 0
    cold = json.loads(capsys.readouterr().out)
    assert cold['history'] == [5011, 5001]
    assert {i for i, _ in cold['top']} <= item_ids - {5011, 5001}
    for argv, message in [(['--user', '1'], "unknown user '1'"),
                          (['--user', '102'], "unknown user '102'"),
                          (['--items', '5002'], "unknown item '5002'")]:
        assert run_cli(['recommend', '--run', str(out), *argv]) == 2
        assert message in error_line(capsys.readouterr().err, 'recommend')


def test_tied_output_run_recommends_its_scores(tmp_path, capsys):
    ratings = tmp_path / 'ratings.tsv'
    write_ratings(ratings)
    out = tmp_path / 'run'
    assert run_cli(['train', '--ratings', str(ratings), '--epochs', '1',
                    '--batch-size', '32', '--output', 'tied', '--windows',
                    'prefixes', '--loss', 'ce', '--quiet', '--out',
                    str(out)]) == 0
    net, state = recommend.load_run(out)
    assert net.Q_prime is None and net.out_proj is not None
    result = recommend.recommend(net, state, user=101, n=5)
    u = state['users'].to_internal(101, 'user')
    scores = all_scores(net, u, state['test_seq'][u], net.num_items)
    top = [state['items'].to_internal(i, 'item') for i, _ in result['top']]
    onp.testing.assert_allclose([s for _, s in result['top']], scores[top],
                                rtol=1e-4, atol=1e-5)
    assert scores[top[0]] >= onp.delete(scores, state['seen'][1][
        state['seen'][0][u]:state['seen'][0][u + 1]]).max() - 1e-5
