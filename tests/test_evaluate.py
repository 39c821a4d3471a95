"""Tests of caser_gluon.evaluate against brute force and d2l's evaluator."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from caser_gluon.evaluate import (
    evaluate_ranking,
    hit_and_auc_from_ranks,
    score_all_items,
    target_ranks,
)
from caser_gluon.model import Caser


def brute_force(scores, targets, seen, k):
    """d2l's definition, one user at a time: sort, then walk the list."""
    hits, aucs = [], []
    for u, t in enumerate(targets):
        ranked = sorted((i for i in range(scores.shape[1]) if not seen[u, i]),
                        key=lambda i: -scores[u, i])     # stable: ids asc
        if t not in ranked:
            hits.append(0)
            aucs.append(0.0)
            continue
        pos = ranked.index(t)
        hits.append(int(pos < k))
        aucs.append((len(ranked) - 1 - pos) / (len(ranked) - 1))
    return onp.array(hits), onp.array(aucs)


def test_hand_computed_case():
    scores = onp.array([[0.9, 0.1, 0.5, 0.7],
                        [0.2, 0.2, 0.2, 0.8]])
    seen = onp.array([[False, False, False, True],
                      [True, False, False, False]])
    targets = onp.array([2, 2])
    ranks, n = target_ranks(scores, targets, seen)
    # user 0: candidates 0, 1, 2 ranked 0 (0.9), 2 (0.5), 1 (0.1)
    # user 1: candidates 1, 2, 3 ranked 3 (0.8), 1 (0.2, smaller id), 2
    assert ranks.tolist() == [1, 2] and n.tolist() == [3, 3]
    hits, aucs = hit_and_auc_from_ranks(ranks, n, k=2)
    assert hits.tolist() == [1, 0]
    onp.testing.assert_allclose(aucs, [0.5, 0.0])


def test_seen_target_scores_zero():
    scores = onp.array([[0.1, 0.9, 0.3]])
    seen = onp.array([[False, True, False]])
    ranks, n = target_ranks(scores, onp.array([1]), seen)
    hits, aucs = hit_and_auc_from_ranks(ranks, n, k=5)
    assert ranks.tolist() == [-1] and hits.tolist() == [0]
    assert aucs.tolist() == [0.0]


@pytest.mark.parametrize('k', [1, 3, 10])
def test_ranks_equal_brute_force_with_ties(k):
    rng = onp.random.default_rng(k)
    scores = rng.integers(0, 5, (40, 25)).astype(float)   # many ties
    seen = rng.random((40, 25)) < 0.3
    targets = rng.integers(0, 25, 40)
    ranks, n = target_ranks(scores, targets, seen)
    hits, aucs = hit_and_auc_from_ranks(ranks, n, k)
    ref_hits, ref_aucs = brute_force(scores, targets, seen, k)
    onp.testing.assert_array_equal(hits, ref_hits)
    onp.testing.assert_allclose(aucs, ref_aucs)


def small_problem(num_users=6, num_items=12, L=3, seed=0):
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


def test_score_all_items_equals_net():
    net, seq, _, _ = small_problem()
    scores = score_all_items(net, seq, device=mx.cpu())
    users = onp.repeat(onp.arange(6), 12)
    items = onp.tile(onp.arange(12), 6)
    direct = net(np.array(users), np.array(seq[users]), np.array(items))
    onp.testing.assert_allclose(scores.ravel(), direct.asnumpy(),
                                rtol=1e-5, atol=1e-6)


def test_d2l_pool_equals_d2l_evaluate_ranking():
    from d2l import mxnet as d2l
    net, seq, candidates, test_input = small_problem()
    expected = d2l.evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                                    [mx.cpu()])
    got = evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                           [mx.cpu()], num_ranked=6)
    onp.testing.assert_allclose(got, [float(x) for x in expected],
                                rtol=1e-6)


def test_all_items_equals_brute_force():
    net, seq, candidates, test_input = small_problem(seed=3)
    got = evaluate_ranking(net, test_input, seq, candidates, 6, 12,
                           [mx.cpu()], k=3)
    scores = score_all_items(net, seq, device=mx.cpu())
    seen = onp.zeros((6, 12), bool)
    for u, items in candidates.items():
        seen[u, items] = True
    hits, aucs = brute_force(scores, [test_input[u][0] for u in range(6)],
                             seen, 3)
    onp.testing.assert_allclose(got, [hits.mean(), aucs.mean()])


def test_evaluate_all_agrees_with_evaluate_ranking():
    from caser_gluon.evaluate import evaluate_all
    net, seq, candidates, test_input = small_problem(seed=5)
    hit_rate, auc = evaluate_ranking(net, test_input, seq, candidates, 6,
                                     12, [mx.cpu()], k=50)
    every = evaluate_all(net, test_input, seq, candidates, 6, 12,
                         [mx.cpu()], ks=(1, 5))
    assert every['hit_rate'] == pytest.approx(hit_rate)
    assert every['auc'] == pytest.approx(auc)
    assert set(every) >= {'hr@1', 'ndcg@5', 'precision@5', 'recall@1',
                          'mrr', 'map'}
    assert 'hr@50' not in every
    # one held-out item: MRR and MAP coincide, recall@k equals HR@k
    assert every['mrr'] == pytest.approx(every['map'])
    assert every['recall@5'] == pytest.approx(every['hr@5'])
