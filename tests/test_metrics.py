"""Tests of caser_gluon.metrics: hand-computed cases and a brute force."""
import math

import numpy as np
import pytest

from caser_gluon.metrics import rank_candidates, ranking_metrics


def brute_force(scores, relevant, excluded, ks):
    """One user at a time: sort the candidates, walk the list."""
    out = {}
    for u in range(scores.shape[0]):
        rel = {i for i in range(scores.shape[1]) if relevant[u, i]}
        if not rel:
            continue
        cand = [i for i in range(scores.shape[1]) if not excluded[u, i]]
        ranked = sorted(cand, key=lambda i: (-scores[u, i], i))
        positions = [r for r, i in enumerate(ranked) if i in rel]
        row = {}
        for k in ks:
            hits = [r for r in positions if r < k]
            ideal = sum(1 / math.log2(r + 2) for r in range(min(len(rel),
                                                                k)))
            row[f'hr@{k}'] = float(bool(hits))
            row[f'ndcg@{k}'] = sum(1 / math.log2(r + 2) for r in hits) / ideal
            row[f'precision@{k}'] = len(hits) / k
            row[f'recall@{k}'] = len(hits) / len(rel)
        row['mrr'] = 1 / (positions[0] + 1) if positions else 0.0
        row['map'] = sum((j + 1) / (r + 1) for j, r in enumerate(positions)
                         ) / len(rel)
        row['auc'] = ((len(ranked) - 1 - positions[0]) / (len(ranked) - 1)
                      if positions else 0.0)
        for key, value in row.items():
            out.setdefault(key, []).append(value)
    return {key: np.array(v) for key, v in out.items()}


def test_hand_computed_single_item():
    # candidates of the user: items 0, 1, 2, 4 (3 is a training item)
    scores = np.array([[0.9, 0.2, 0.5, 0.99, 0.5]])
    excluded = np.array([[False, False, False, True, False]])
    relevant = np.array([[False, False, False, False, True]])
    m = ranking_metrics(scores, relevant, excluded, ks=(1, 2, 3))
    # ranking: 0 (0.9), 2 (0.5, smaller id wins the tie), 4 (0.5), 1
    assert m['hr@1'][0] == 0 and m['hr@2'][0] == 0 and m['hr@3'][0] == 1
    assert m['ndcg@3'][0] == pytest.approx(1 / math.log2(4))
    assert m['precision@3'][0] == pytest.approx(1 / 3)
    assert m['recall@3'][0] == 1
    assert m['mrr'][0] == pytest.approx(1 / 3)
    assert m['map'][0] == pytest.approx(1 / 3)
    assert m['auc'][0] == pytest.approx((4 - 1 - 2) / 3)


def test_hand_computed_two_items():
    scores = np.array([[0.1, 0.8, 0.6, 0.3]])
    relevant = np.array([[True, False, True, False]])
    excluded = np.zeros((1, 4), bool)
    m = ranking_metrics(scores, relevant, excluded, ks=(2,))
    # ranking 1, 2, 3, 0: relevant at ranks 2 and 4 (1-based)
    assert m['precision@2'][0] == 0.5 and m['recall@2'][0] == 0.5
    assert m['map'][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert m['ndcg@2'][0] == pytest.approx((1 / math.log2(3)) / ideal)


def test_excluded_relevant_item_scores_zero_and_users_without_items():
    scores = np.array([[0.5, 0.4], [0.1, 0.2]])
    relevant = np.array([[True, False], [False, False]])
    excluded = np.array([[True, False], [False, False]])
    m = ranking_metrics(scores, relevant, excluded, ks=(1,))
    assert m['hr@1'].tolist() == [0.0]      # user 1 has no relevant item
    assert m['auc'].tolist() == [0.0] and m['mrr'].tolist() == [0.0]


@pytest.mark.parametrize('seed', range(4))
def test_equals_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (30, 20)).astype(float)      # many ties
    relevant = rng.random((30, 20)) < 0.15
    excluded = (rng.random((30, 20)) < 0.3) & ~relevant
    excluded[::5] |= relevant[::5]          # some relevant items excluded
    ks = (1, 3, 10)
    got = ranking_metrics(scores, relevant, excluded, ks=ks)
    ref = brute_force(scores, relevant, excluded, ks)
    assert set(got) == set(ref)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], err_msg=key)


def test_rank_candidates_puts_excluded_last():
    order, n = rank_candidates(np.array([[3.0, 1.0, 2.0]]),
                               np.array([[True, False, False]]))
    assert order.tolist() == [[2, 1, 0]] and n.tolist() == [2]
    with pytest.raises(ValueError, match='NaN'):
        rank_candidates(np.array([[np.nan]]), np.array([[False]]))
