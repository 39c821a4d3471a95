"""Tests of caser_gluon.metrics: hand-computed cases and a brute force."""
import math

import numpy as np
import pytest
from helpers import brute_force_metrics

from caser_gluon.interactions import ItemSets
from caser_gluon.metrics import (
    block_of,
    metrics_from_ranks,
    padded_rows,
    ranking_metrics,
    target_ranks,
)


def sets_of(mask):
    """ItemSets of a dense (num_users, num_items) bool mask."""
    mask = np.asarray(mask, bool)
    return ItemSets.from_pairs(*np.nonzero(mask), num_users=mask.shape[0],
                               num_items=mask.shape[1])


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
def test_equals_brute_force_with_ties_and_nan(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (30, 20)).astype(float)      # many ties
    scores[rng.random((30, 20)) < 0.1] = np.nan
    scores[rng.random((30, 20)) < 0.05] = -np.inf
    relevant = rng.random((30, 20)) < 0.15
    excluded = (rng.random((30, 20)) < 0.3) & ~relevant
    excluded[::5] |= relevant[::5]          # some relevant items excluded
    ks = (1, 3, 10)
    got = ranking_metrics(scores, relevant, excluded, ks=ks)
    ref = brute_force_metrics(scores, relevant, excluded, ks)
    assert set(got) == set(ref)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], err_msg=key)


def test_equals_brute_force_across_row_chunks(monkeypatch):
    """Ranks are counted ``BEFORE_ROWS`` rows at a time: with chunks of 7
    rows (boundaries inside the block, a short last chunk) the metrics
    still equal the brute force's, ties and NaN included."""
    from caser_gluon import metrics as metrics_lib
    monkeypatch.setattr(metrics_lib, 'BEFORE_ROWS', 7)
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, (30, 20)).astype(float)      # many ties
    scores[rng.random((30, 20)) < 0.1] = np.nan
    relevant = rng.random((30, 20)) < 0.15
    excluded = (rng.random((30, 20)) < 0.3) & ~relevant
    got = ranking_metrics(scores, relevant, excluded, ks=(1, 5))
    ref = brute_force_metrics(scores, relevant, excluded, (1, 5))
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], err_msg=key)


def test_nan_scores_never_hit():
    """A model gone NaN ranks nothing: every metric is 0, not 1."""
    scores = np.full((3, 6), np.nan)
    relevant = np.eye(3, 6, k=1, dtype=bool)
    m = ranking_metrics(scores, relevant, np.zeros((3, 6), bool),
                        ks=(1, 50))
    for key, values in m.items():
        assert values.tolist() == [0.0] * 3, key
    # NaN elsewhere: the relevant item beats every NaN candidate
    scores[:, 1:] = np.nan
    scores[:, 0] = 0.0
    relevant = np.zeros((3, 6), bool)
    relevant[:, 0] = True
    m = ranking_metrics(scores, relevant, np.zeros((3, 6), bool), ks=(1,))
    assert m['hr@1'].tolist() == [1.0] * 3
    assert m['auc'].tolist() == [1.0] * 3


def test_target_ranks_hand_computed():
    scores = np.array([[0.9, 0.1, 0.5, 0.7],
                       [0.2, 0.2, 0.2, 0.8]])
    excluded = sets_of([[False, False, False, True],
                        [True, False, False, False]])
    ranks, n = target_ranks(scores, np.array([[2], [2]]), excluded)
    # user 0: candidates 0, 1, 2 ranked 0 (0.9), 2 (0.5), 1 (0.1)
    # user 1: candidates 1, 2, 3 ranked 3 (0.8), 1 (0.2, smaller id), 2
    assert ranks.tolist() == [[1], [2]] and n.tolist() == [3, 3]
    # padding (-1), an excluded target and a target outside d2l's pool
    ranks, n = target_ranks(scores, np.array([[-1, 3], [0, 1]]), excluded,
                            num_ranked=3)
    assert ranks.tolist() == [[-1, -1], [-1, 0]]
    assert n.tolist() == [3, 2]     # pool 0..2; user 1 excludes item 0


def test_metrics_from_ranks_hand_computed():
    # user 0: relevant items at ranks 0 and 4 of 10 candidates, and one
    # unranked; user 1: one relevant item, unranked
    ranks = np.array([[4, -1, 0], [-1, -1, -1]])
    m = metrics_from_ranks(ranks, np.array([3, 1]), np.array([10, 10]),
                           ks=(1, 5))
    assert m['hr@1'].tolist() == [1.0, 0.0]
    assert m['precision@5'].tolist() == [2 / 5, 0.0]
    assert m['recall@5'] == pytest.approx([2 / 3, 0.0])
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m['ndcg@5'] == pytest.approx([(1 + 1 / math.log2(6)) / ideal,
                                         0.0])
    assert m['mrr'].tolist() == [1.0, 0.0]
    assert m['map'] == pytest.approx([(1 + 2 / 5) / 3, 0.0])
    assert m['auc'] == pytest.approx([1.0, 0.0])


def test_padded_rows_and_block_of():
    sets = ItemSets.from_lists({0: [4, 1], 2: [3], 3: [0, 2, 5]},
                               num_users=5, num_items=6)
    assert padded_rows(sets, 0, 5).tolist() == [
        [1, 4, -1], [-1, -1, -1], [3, -1, -1], [0, 2, 5], [-1, -1, -1]]
    assert padded_rows(sets, 1, 3).tolist() == [[-1], [3]]
    assert padded_rows(sets, 4, 5).tolist() == [[-1]]
    block = block_of(sets, 2, 4)
    assert block.num_users == 2 and block.num_items == 6
    assert [block.row(u).tolist() for u in range(2)] == [[3], [0, 2, 5]]
    np.testing.assert_array_equal(block.dense(), sets.dense(2, 4))
