"""Top-N ranking metrics: the one ranking implementation of the package.

The chapter reports the hit rate at 50 and d2l's AUC; the Caser paper
Precision@N, Recall@N and MAP; NDCG@N and MRR are the other usual ones.
All come from the rank of each relevant item among the user's candidates:

* the candidates of a user are all items except the ``excluded`` ones (the
  user's training items, as in ``d2l.evaluate_ranking``);
* candidates are sorted by score, descending; **ties are broken by
  ascending item id** (what a stable sort of d2l's candidate list gives);
* the rank of a relevant item is the number of candidates before it, so
  it is *counted*, never sorted: a block of users costs one pass over its
  ``(users, items)`` scores per relevant item, and memory stays that of
  the block (:mod:`caser_gluon.evaluate` streams users in blocks).

A relevant item that is excluded, outside the ranked pool or whose score
is NaN is never a hit. Users with no relevant item are left out.
"""
import numpy as np

from .interactions import ItemSets

__all__ = [
    'KS',
    'block_of',
    'metrics_from_ranks',
    'padded_rows',
    'ranking_metrics',
    'target_ranks',
]


#: the cut-offs ``k`` of every run's HR@k, NDCG@k, precision@k, recall@k
KS = (1, 5, 10, 50)


def target_ranks(scores, targets, excluded, *, num_ranked=None):
    """0-based rank of each target among its user's candidates.

    Parameters
    ----------
    scores : (B, num_items) float
        A block of users' scores (NaN is allowed: it never wins).
    targets : (B, R) int
        Relevant items of each user, ``-1`` for none (padding).
    excluded : ItemSets
        Of the same ``B`` users: items that are not candidates.
    num_ranked : int, optional
        Rank only item ids below this (d2l's pool); all by default.

    Returns
    -------
    ranks : (B, R) int64
        Candidates before the target (higher score, or equal score and
        smaller id); ``-1`` where the target is not a ranked candidate.
    num_candidates : (B,) int64
    """
    n = scores.shape[1] if num_ranked is None else num_ranked
    scores = scores[:, :n]
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    targets = np.asarray(targets, np.int64)
    rows_e = np.repeat(np.arange(len(scores)), excluded.counts())
    keep = excluded.indices < n
    rows_e, items_e = rows_e[keep], excluded.indices[keep]
    scores_e = scores[rows_e, items_e]
    ranks = np.full(targets.shape, -1, np.int64)
    for r in range(targets.shape[1]):
        t = targets[:, r]
        valid = (t >= 0) & (t < n)
        ts = np.where(valid, scores[np.arange(len(t)), np.minimum(t, n - 1)],
                      np.nan)
        count = _before(scores, ts, t) - np.bincount(
            rows_e, weights=(scores_e > ts[rows_e]) | (
                (scores_e == ts[rows_e]) & (items_e < t[rows_e])),
            minlength=len(t)).astype(np.int64)
        ok = valid & ~np.isneginf(ts) & ~_is_excluded(excluded, t)
        ranks[ok, r] = count[ok]
    num_candidates = n - np.bincount(rows_e, minlength=len(scores))
    return ranks, num_candidates


#: rows of scores compared at once in :func:`_before` (a few MB: the
#: second pass reads them from the cache)
BEFORE_ROWS = 64


def _before(scores, ts, t):
    """(B,) items before each target: higher score, or tie and smaller id.

    Two passes (``>`` and ``==``) over each ``BEFORE_ROWS`` rows, while
    they are in the cache (30% faster than over the whole block); the ids
    of tied items are looked at only in the rows with a tie besides the
    target itself.
    """
    count = np.empty(len(ts), np.int64)
    ties = np.empty(len(ts), np.int64)
    for start in range(0, len(ts), BEFORE_ROWS):
        rows = slice(start, start + BEFORE_ROWS)
        block, column = scores[rows], ts[rows, None]
        count[rows] = np.count_nonzero(block > column, axis=1)
        ties[rows] = np.count_nonzero(block == column, axis=1)
    for u in np.flatnonzero(ties > 1):
        count[u] += np.count_nonzero(scores[u, :t[u]] == ts[u])
    return count


def _is_excluded(excluded, items):
    """(B,) bool: whether ``items[u]`` is among row ``u``'s excluded."""
    valid = items >= 0
    out = np.zeros(len(items), bool)
    out[valid] = excluded.contains(np.flatnonzero(valid), items[valid])
    return out


def metrics_from_ranks(ranks, num_relevant, num_candidates, *, ks):
    """Every metric of each user from the ranks of its relevant items.

    Parameters
    ----------
    ranks : (B, R) int
        0-based ranks of the relevant items, ``-1``: not ranked.
    num_relevant : (B,) int
        Relevant items of each user (ranked or not), all > 0.
    num_candidates : (B,) int
    ks : iterable of int

    Returns
    -------
    dict of str to (B,) float
        ``hr@k`` (1 if a relevant item is in the top k), ``ndcg@k``,
        ``precision@k`` (hits / k), ``recall@k`` (hits / relevant items),
        ``mrr`` (1 / rank of the first hit, 1-based), ``map`` (average
        precision over the whole ranking) and ``auc`` (d2l's: ``(n_c - 1 -
        r) / (n_c - 1)``, ``r`` the rank of the first hit among ``n_c``).
    """
    big = np.iinfo(np.int64).max // 4
    r = np.sort(np.where(ranks >= 0, ranks, big), axis=1)    # (B, R)
    found = r < big
    first = r[:, 0] if r.shape[1] else np.full(len(r), big)
    num_relevant = np.asarray(num_relevant)
    out = {}
    gain = np.where(found, 1.0 / np.log2(np.minimum(r, big - 2) + 2.0), 0.0)
    for k in ks:
        top = r < k
        count = top.sum(axis=1)
        ideal = (1.0 / np.log2(np.arange(k) + 2.0)).cumsum()[
            np.minimum(num_relevant, k) - 1]
        out[f'hr@{k}'] = (count > 0).astype(float)
        out[f'ndcg@{k}'] = (gain * top).sum(axis=1) / ideal
        out[f'precision@{k}'] = count / k
        out[f'recall@{k}'] = count / num_relevant
    any_hit = first < big
    out['mrr'] = np.where(any_hit, 1.0 / (np.minimum(first, big - 1) + 1), 0.)
    position = np.arange(1, r.shape[1] + 1)
    out['map'] = np.where(found, position / (np.minimum(r, big - 1) + 1.0),
                          0.0).sum(axis=1) / num_relevant
    denom = np.maximum(num_candidates - 1, 1)
    out['auc'] = np.where(any_hit, (num_candidates - 1 - np.minimum(
        first, big - 1)) / denom, 0.0)
    return out


def ranking_metrics(scores, relevant, excluded, *, ks=KS):
    """Every metric from dense matrices, for small data and tests.

    Parameters
    ----------
    scores : (num_users, num_items) float
    relevant, excluded : (num_users, num_items) bool

    Returns
    -------
    dict of str to (n,) float
        As :func:`metrics_from_ranks`, for the ``n`` users with a relevant
        item.
    """
    relevant = np.asarray(relevant, bool)
    keep = relevant.any(axis=1)
    rel = ItemSets.from_pairs(*np.nonzero(relevant[keep]),
                              num_users=int(keep.sum()),
                              num_items=relevant.shape[1])
    exc = ItemSets.from_pairs(*np.nonzero(np.asarray(excluded)[keep]),
                              num_users=int(keep.sum()),
                              num_items=relevant.shape[1])
    targets = padded_rows(rel, 0, rel.num_users)
    ranks, n_cand = target_ranks(np.asarray(scores)[keep], targets, exc)
    return metrics_from_ranks(ranks, rel.counts(), n_cand, ks=ks)


def padded_rows(sets, start, stop):
    """Rows ``start:stop`` of ``sets`` as a (B, R) array, ``-1``-padded."""
    counts = sets.counts()[start:stop]
    out = np.full((stop - start, max(int(counts.max(initial=0)), 1)), -1,
                  np.int64)
    lo = sets.indptr[start]
    rows = np.repeat(np.arange(stop - start), counts)
    cols = np.arange(sets.indptr[stop] - lo) - np.repeat(
        sets.indptr[start:stop] - lo, counts)
    out[rows, cols] = sets.indices[lo:sets.indptr[stop]]
    return out


def block_of(sets, start, stop):
    """Rows ``start:stop`` of ``sets`` as an ItemSets of their own."""
    lo = sets.indptr[start]
    return ItemSets(sets.indptr[start:stop + 1] - lo,
                    sets.indices[lo:sets.indptr[stop]],
                    num_users=stop - start, num_items=sets.num_items)
