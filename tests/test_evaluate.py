"""Tests of caser_gluon.evaluate against brute force and d2l's evaluator."""
import mxnet as mx
import numpy as onp
import pytest
from helpers import brute_force_metrics
from mxnet import np

from caser_gluon.evaluate import (
    as_item_sets,
    evaluate_all,
    evaluate_blocks,
    evaluate_ranking,
    model_scorer,
)
from caser_gluon.interactions import ItemSets
from caser_gluon.model import Caser


def small_problem(num_users=6, num_items=12, L=3, seed=0):
    """A small Caser, test sequences and d2l-style dicts of items."""
    rng = onp.random.default_rng(seed)
    net = Caser(4, num_users, num_items, L=L, d=2, d_prime=2)
    net.initialize(init=mx.init.Normal(0.5))
    seq = rng.integers(0, num_items, (num_users, L)).astype('int32')
    candidates = {u: sorted(rng.choice(num_items, 4, replace=False).tolist())
                  for u in range(num_users)}
    test_input = {u: [int(rng.choice([i for i in range(num_users)
                                      if i not in candidates[u]]))]
                  for u in range(num_users)}
    return net, seq, candidates, test_input


def dense(sets, num_users, num_items):
    mask = onp.zeros((num_users, num_items), bool)
    for u, items in sets.items():
        mask[u, items] = True
    return mask


@pytest.mark.parametrize('on_host', [None, True, False])
def test_model_scorer_equals_net(on_host):
    """Both scorers (NumPy's product, the default on a CPU; MXNet's
    ``score_all``, a GPU's) give the model's own scores."""
    net, seq, _, _ = small_problem()
    score = model_scorer(net, seq, device=mx.cpu(), on_host=on_host)
    scores = onp.concatenate([score(0, 4), score(4, 6)])
    users = onp.repeat(onp.arange(6), 12)
    items = onp.tile(onp.arange(12), 6)
    direct = net(np.array(users), np.array(seq[users]), np.array(items))
    onp.testing.assert_allclose(scores.ravel(), direct.asnumpy(),
                                rtol=1e-5, atol=1e-6)


def test_model_scorer_default_follows_the_device(monkeypatch):
    """A CPU scores with NumPy's product (``score_all`` unused); a GPU
    context keeps MXNet's (no host copy of the item table is made)."""
    net, seq, _, _ = small_problem()

    def refuse(*args, **kwargs):
        raise AssertionError('the other scorer was used')
    monkeypatch.setattr(net, 'score_all', refuse)
    model_scorer(net, seq, device=mx.cpu())(0, 6)
    monkeypatch.setattr(net, 'folded_output_table', refuse)
    model_scorer(net, seq, device=mx.gpu(0))     # made, not called: no GPU


def test_d2l_pool_equals_d2l_evaluate_ranking():
    from d2l import mxnet as d2l
    net, seq, candidates, test_input = small_problem()
    expected = d2l.evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                                    [mx.cpu()])
    got = evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                           [mx.cpu()], num_ranked=6)
    onp.testing.assert_allclose(got, [float(x) for x in expected],
                                rtol=1e-6)
    # ItemSets give the same as d2l's dicts
    sets = evaluate_ranking(
        net, as_item_sets(test_input, 6, 12), seq,
        as_item_sets(candidates, 6, 12), 6, 12, [mx.cpu()], num_ranked=6)
    onp.testing.assert_allclose(sets, got)


def test_all_items_equals_brute_force():
    net, seq, candidates, test_input = small_problem(seed=3)
    got = evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                           [mx.cpu()], k=3)
    scores = model_scorer(net, seq, device=mx.cpu())(0, 6)
    ref = brute_force_metrics(scores, dense(test_input, 6, 12),
                              dense(candidates, 6, 12), ks=(3,))
    onp.testing.assert_allclose(got, [ref['hr@3'].mean(),
                                      ref['auc'].mean()])


def test_evaluate_all_agrees_with_evaluate_ranking():
    net, seq, candidates, test_input = small_problem(seed=5)
    hit_rate, auc = evaluate_ranking(net, test_input, seq, candidates, 6,
                                     12, [mx.cpu()], k=50)
    every = evaluate_all(net, test_input, seq, candidates, 6, 12,
                         [mx.cpu()], ks=(1, 5, 50))
    assert every['hit_rate'] == pytest.approx(hit_rate)
    assert every['auc'] == pytest.approx(auc)
    assert set(every) >= {'hr@1', 'ndcg@5', 'precision@5', 'recall@1',
                          'mrr', 'map'}
    assert every['eval_users'] == 6 and every['min_candidates'] == 8
    # one held-out item: MRR and MAP coincide, recall@k equals HR@k
    assert every['mrr'] == pytest.approx(every['map'])
    assert every['recall@5'] == pytest.approx(every['hr@5'])
    without_50 = evaluate_all(net, test_input, seq, candidates, 6, 12,
                              [mx.cpu()], ks=(1, 5))
    assert 'hr@50' not in without_50 and 'hit_rate' not in without_50


def random_problem(seed, num_users=40, num_items=25):
    """Scores with ties and NaN, several relevant items, empty users."""
    rng = onp.random.default_rng(seed)
    scores = rng.integers(0, 5, (num_users, num_items)).astype('float32')
    scores[rng.random(scores.shape) < 0.05] = onp.nan
    relevant = rng.random(scores.shape) < 0.1
    relevant[10:17] = False             # a whole block without relevant
    excluded = (rng.random(scores.shape) < 0.3) & ~relevant
    excluded[::7] |= relevant[::7]
    return scores, relevant, excluded


@pytest.mark.parametrize('seed', range(3))
def test_streamed_equals_dense_brute_force(seed):
    scores, relevant, excluded = random_problem(seed)
    num_users, num_items = scores.shape
    calls = []

    def score(start, stop):
        calls.append((start, stop))
        return scores[start:stop]

    ks = (1, 3, 10, 50)
    got = evaluate_blocks(score, relevant=ItemSets.from_pairs(
        *onp.nonzero(relevant), num_users=num_users, num_items=num_items),
        excluded=ItemSets.from_pairs(*onp.nonzero(excluded),
                                     num_users=num_users,
                                     num_items=num_items),
        ks=ks, block_bytes=4 * num_items * 3)      # 3 users per block
    # several blocks, in order, covering every user that has a relevant
    # item (blocks without one are skipped, not scored)
    assert all(stop - start <= 3 for start, stop in calls)
    assert len(calls) >= 8
    scored = onp.zeros(num_users, bool)
    for start, stop in calls:
        scored[start:stop] = True
    assert scored[relevant.any(axis=1)].all()
    ref = brute_force_metrics(scores, relevant, excluded, ks)
    assert set(got) == set(ref) | {'hit_rate', 'eval_users',
                                   'min_candidates'}
    for key, values in ref.items():
        assert got[key] == pytest.approx(values.mean(), rel=1e-9,
                                         abs=1e-12), key
    assert got['hit_rate'] == got['hr@50']
    assert got['eval_users'] == relevant.any(axis=1).sum()
    has = relevant.any(axis=1)
    assert got['min_candidates'] == (num_items - excluded.sum(axis=1))[
        has].min()


def test_nan_model_gives_zero_not_one():
    """A model whose parameters went NaN scores 0, never HR 1.0."""
    net, seq, candidates, test_input = small_problem()
    net.b.weight.set_data(np.full(net.b.weight.shape, onp.nan))
    got = evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                           [mx.cpu()])
    assert [float(x) for x in got] == [0.0, 0.0]
    got = evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                           [mx.cpu()], num_ranked=6)
    assert [float(x) for x in got] == [0.0, 0.0]
    every = evaluate_blocks(lambda a, b: onp.full((b - a, 12), onp.nan),
                            relevant=as_item_sets(test_input, 6, 12),
                            excluded=as_item_sets(candidates, 6, 12),
                            block_bytes=4 * 12)
    assert every['hit_rate'] == 0.0 and every['auc'] == 0.0
    assert every['mrr'] == 0.0 and every['ndcg@50'] == 0.0


def test_missing_test_items_are_errors():
    net, seq, candidates, test_input = small_problem()
    del test_input[3]
    with pytest.raises(KeyError, match='user 3 has no test item'):
        evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                         [mx.cpu()])
    empty = ItemSets.from_lists({}, num_users=6, num_items=12)
    with pytest.raises(ValueError, match='no user has a held-out item'):
        evaluate_blocks(lambda a, b: onp.zeros((b - a, 12)), relevant=empty,
                        excluded=empty)


def test_d2l_ranks_the_first_test_item_only():
    net, seq, candidates, test_input = small_problem(seed=7)
    scores = model_scorer(net, seq, device=mx.cpu())(0, 6)
    two = {}
    for u, items in test_input.items():     # add the best-scored candidate
        order = [i for i in onp.argsort(-scores[u])
                 if i not in candidates[u] and i != items[0]]
        two[u] = items + [int(order[0])]
    one = evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                           [mx.cpu()])
    onp.testing.assert_allclose(
        evaluate_ranking(net, two, seq, candidates, 6, 12, [mx.cpu()]), one)
    both = evaluate_all(net, two, seq, candidates, 6, 12, [mx.cpu()])
    assert both['auc'] > one[1]          # ranking both would differ


def test_as_item_sets():
    sets = as_item_sets({0: [3, 1], 2: [1]}, 3, 4)
    assert isinstance(sets, ItemSets)
    assert [sets.row(u).tolist() for u in range(3)] == [[1, 3], [], [1]]
    assert as_item_sets(sets, 3, 4) is sets


def test_ctrl_c_dropped_in_a_destructor_stops_the_evaluation():
    """A Ctrl-C recorded inside a ``__del__`` during the final evaluation
    stops it at the next block of users (it used to finish the run)."""
    import signal

    from caser_gluon import runtime
    _, _, candidates, test_input = small_problem()
    relevant = as_item_sets(test_input, 6, 12)
    excluded = as_item_sets(candidates, 6, 12)
    scored = []

    def score(start, stop):
        scored.append((start, stop))
        return onp.zeros((stop - start, 12), onp.float32)

    class Frees:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
    try:
        runtime.catch_interrupts()
        evaluate_blocks(score, relevant=relevant, excluded=excluded,
                        block_bytes=4 * 12 * 2)          # 2 users a block
        assert len(scored) == 3                          # nothing recorded
        Frees()
        with pytest.raises(KeyboardInterrupt):
            evaluate_blocks(score, relevant=relevant, excluded=excluded,
                            block_bytes=4 * 12 * 2)
        assert len(scored) == 3                          # no block scored
    finally:
        runtime._INTERRUPTED.clear()
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.mark.parametrize('output', ['separate', 'tied'])
def test_table_scores_equal_a_numpy_reference(output):
    """The evaluator's NumPy scores: every item, ``x . Q'_i + b_i`` (tied:
    ``x . Q_i``, no bias), as the model's own ``score_all`` gives them."""
    from caser_gluon.recommender import table_scores
    rng = onp.random.default_rng(1)
    net = Caser(4, 6, 12, L=3, d=2, d_prime=2, output=output)
    net.initialize(init=mx.init.Normal(0.5))
    users = np.array(onp.arange(6))
    seqs = np.array(rng.integers(0, 12, (6, 3)))
    table = net.folded_output_table(mx.cpu())
    assert table.shape == (12, net.user_vectors(users, seqs).shape[1] + 1)
    x = net.user_vectors(users, seqs).asnumpy()
    q, bias = net.output_table(mx.cpu())
    want = x.astype(onp.float64) @ q.asnumpy().T.astype(onp.float64)
    if bias is not None:
        want += bias.asnumpy()[:, 0]
    got = table_scores(x, table)
    assert got.dtype == onp.float32 and got.shape == (6, 12)
    onp.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    onp.testing.assert_allclose(got, net.score_all(users, seqs).asnumpy(),
                                rtol=1e-5, atol=1e-6)
