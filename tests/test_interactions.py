"""Tests of caser_gluon.interactions against a dense boolean reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caser_gluon.data import DataError, seen_mask
from caser_gluon.interactions import ItemSets, sample_negatives


@st.composite
def pairs(draw, max_users=7, max_items=9):
    """``(users, items, num_users, num_items)``, duplicates allowed."""
    num_users = draw(st.integers(1, max_users))
    num_items = draw(st.integers(1, max_items))
    n = draw(st.integers(0, 40))
    users = draw(st.lists(st.integers(0, num_users - 1), min_size=n,
                          max_size=n))
    items = draw(st.lists(st.integers(0, num_items - 1), min_size=n,
                          max_size=n))
    return np.array(users, int), np.array(items, int), num_users, num_items


def dense_reference(users, items, num_users, num_items):
    seen = np.zeros((num_users, num_items), dtype=bool)
    for u, i in zip(users, items):
        seen[u, i] = True
    return seen


def test_worked_example():
    sets = ItemSets.from_pairs([0, 0, 2], [3, 1, 0], num_users=3,
                               num_items=4)
    assert sets.indptr.tolist() == [0, 2, 2, 3]
    assert sets.indices.tolist() == [1, 3, 0]
    assert dict(sets) == {0: [1, 3], 2: [0]}
    assert sets == {0: [1, 3], 2: [0]}
    assert sets.counts().tolist() == [2, 0, 1]
    assert 1 not in sets and 0 in sets and 5 not in sets
    with pytest.raises(KeyError):
        sets[1]


@settings(max_examples=40, deadline=None)
@given(data=pairs())
def test_sets_equal_the_dense_reference(data):
    users, items, num_users, num_items = data
    seen = dense_reference(*data)
    sets = ItemSets.from_pairs(users, items, num_users=num_users,
                               num_items=num_items)
    np.testing.assert_array_equal(sets.dense(), seen)
    np.testing.assert_array_equal(sets.counts(), seen.sum(axis=1))
    np.testing.assert_array_equal(sets.item_counts(), seen.sum(axis=0))
    assert sets.nnz == seen.sum()
    for start in range(num_users + 1):
        np.testing.assert_array_equal(sets.dense(start, start + 2),
                                      seen[start:start + 2])
    grid_u, grid_i = np.meshgrid(np.arange(-1, num_users + 1),
                                 np.arange(-1, num_items + 2),
                                 indexing='ij')
    expected = np.zeros(grid_u.shape, dtype=bool)
    expected[1:-1, 1:-2] = seen         # ids out of range: never contained
    np.testing.assert_array_equal(sets.contains(grid_u, grid_i), expected)
    np.testing.assert_array_equal(
        sets.contains(grid_u.ravel(), grid_i.ravel()), expected.ravel())
    as_dict = {u: np.flatnonzero(seen[u]).tolist()
               for u in range(num_users) if seen[u].any()}
    assert dict(sets.items()) == as_dict
    assert list(sets) == list(sets.keys()) == sorted(as_dict)
    assert len(sets) == len(as_dict)
    for u in range(num_users):
        assert sets.row(u).tolist() == np.flatnonzero(seen[u]).tolist()
    lists = {u: list(reversed(v)) * 2 for u, v in as_dict.items()}
    again = ItemSets.from_lists(lists, num_users=num_users,
                                num_items=num_items)
    np.testing.assert_array_equal(again.indptr, sets.indptr)
    np.testing.assert_array_equal(again.indices, sets.indices)
    np.testing.assert_array_equal(seen_mask(sets, num_users, num_items),
                                  seen)
    np.testing.assert_array_equal(seen_mask(lists, num_users, num_items),
                                  seen)


def test_contains_needs_only_the_csr_arrays():
    sets = ItemSets.from_pairs([2, 0, 2], [1, 4, 0], num_users=3,
                               num_items=5)
    rebuilt = ItemSets(sets.indptr, sets.indices, num_users=3, num_items=5)
    np.testing.assert_array_equal(rebuilt.contains([2, 2, 0, 1], [0, 2, 4,
                                                                   4]),
                                  [True, False, True, False])
    assert rebuilt.nbytes > 0


def test_bad_ids_and_shapes_raise():
    with pytest.raises(DataError, match='item id 5 outside 0..4'):
        ItemSets.from_pairs([0], [5], num_users=1, num_items=5)
    with pytest.raises(DataError, match='user id -1 outside'):
        ItemSets.from_pairs([-1], [0], num_users=1, num_items=5)
    with pytest.raises(DataError, match='indptr'):
        ItemSets([0, 2], [1], num_users=1, num_items=5)


@settings(max_examples=40, deadline=None)
@given(data=pairs(), seed=st.integers(0, 2 ** 16),
       max_rounds=st.sampled_from([0, 1, 30]))
def test_negatives_never_seen_and_every_unseen_item_reachable(
        data, seed, max_rounds):
    users, items, num_users, num_items = data
    seen = dense_reference(*data)
    sets = ItemSets.from_pairs(users, items, num_users=num_users,
                               num_items=num_items)
    open_users = np.flatnonzero(~seen.all(axis=1))
    if not len(open_users):
        return
    draws = np.repeat(open_users, 40 * num_items)
    neg = sample_negatives(draws, sets, np.random.default_rng(seed),
                           max_rounds=max_rounds)
    assert not seen[draws, neg].any()
    for u in open_users:
        assert set(neg[draws == u]) == set(np.flatnonzero(~seen[u]))
    # the dense mask gives the same draws from the same generator
    dense = sample_negatives(draws, seen, np.random.default_rng(seed),
                             max_rounds=max_rounds)
    np.testing.assert_array_equal(dense, neg)


def test_exact_fallback_is_uniform_over_unseen_items():
    seen = np.ones((1, 50), dtype=bool)
    seen[0, [3, 17, 49]] = False
    sets = ItemSets.from_pairs(*np.nonzero(seen), num_users=1, num_items=50)
    neg = sample_negatives(np.zeros(30_000, int), sets,
                           np.random.default_rng(0), max_rounds=0)
    counts = np.bincount(neg, minlength=50)[[3, 17, 49]]
    assert counts.sum() == 30_000
    assert np.abs(counts / 10_000 - 1).max() < 0.05


@pytest.mark.parametrize('dense', [False, True])
def test_a_user_who_has_seen_every_item_is_named(dense):
    sets = ItemSets.from_pairs([0, 1, 1], [0, 0, 1], num_users=2,
                               num_items=2)
    seen = sets.dense() if dense else sets
    rng = np.random.default_rng(0)
    assert sample_negatives([0, 0], seen, rng).tolist() == [1, 1]
    with pytest.raises(DataError, match='user 2 \\(1-based\\) has seen '
                       'every item'):
        sample_negatives([0, 1], seen, rng)
