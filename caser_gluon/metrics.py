"""Top-N ranking metrics over a score matrix, beyond the chapter's two.

The chapter reports the hit rate at 50 and d2l's AUC. The Caser paper
reports Precision@N, Recall@N and MAP; NDCG@N and MRR are the other usual
ones. All are computed here from one ranking per user:

* the candidates of a user are the items not ``excluded`` (the user's
  training items are excluded, as in ``d2l.evaluate_ranking``);
* candidates are sorted by score, descending; **ties are broken by
  ascending item id**, which is what a stable sort of d2l's candidate list
  gives, so that every metric is deterministic;
* ``relevant`` marks the held-out item(s) of each user.

Users with no relevant candidate get 0 for every metric (d2l counts them
that way too); users with no relevant item at all are left out of the mean.
"""
import numpy as np

__all__ = ['rank_candidates', 'ranking_metrics']


def rank_candidates(scores, excluded):
    """Each user's candidates in rank order.

    Parameters
    ----------
    scores : (num_users, num_items) float
    excluded : (num_users, num_items) bool
        True for items that are not ranked (training items).

    Returns
    -------
    order : (num_users, num_items) int
        Item ids by rank: candidates first (score descending, ties by id
        ascending), then the excluded items.
    num_candidates : (num_users,) int
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError('scores contain NaN')
    key = np.where(excluded, np.inf, -scores)
    order = np.argsort(key, axis=1, kind='stable')
    return order, (~np.asarray(excluded)).sum(axis=1)


def ranking_metrics(scores, relevant, excluded, *, ks=(1, 5, 10, 50)):
    """HR@k, NDCG@k, Precision@k, Recall@k, MRR, MAP and d2l's AUC.

    Parameters
    ----------
    scores : (num_users, num_items) float
    relevant : (num_users, num_items) bool
        The held-out items of each user.
    excluded : (num_users, num_items) bool
        Items not ranked for the user (its training items).
    ks : iterable of int
        Cut-offs.

    Returns
    -------
    dict of str to (n,) float
        Per user (the ``n`` users with a relevant item): ``hr@k`` (1 if a
        relevant item is in the top k), ``ndcg@k``, ``precision@k`` (hits
        / k), ``recall@k`` (hits / relevant items), ``mrr`` (1 / rank of
        the first hit, 1-based), ``map`` (average precision over the whole
        ranking) and ``auc`` (d2l: ``(n_c - 1 - r) / (n_c - 1)`` with ``r``
        the 0-based rank of the first hit among ``n_c`` candidates).
    """
    relevant = np.asarray(relevant, dtype=bool)
    excluded = np.asarray(excluded, dtype=bool)
    keep = relevant.any(axis=1)
    order, n_cand = rank_candidates(np.asarray(scores)[keep], excluded[keep])
    rows = np.arange(len(order))[:, None]
    # hits[u, r]: the item at rank r is a relevant candidate of user u
    hits = (relevant[keep][rows, order] & ~excluded[keep][rows, order])
    num_relevant = relevant[keep].sum(axis=1)
    found = hits.any(axis=1)
    first = np.where(found, hits.argmax(axis=1), 0)
    out = {}
    discount = 1.0 / np.log2(np.arange(hits.shape[1]) + 2)
    for k in ks:
        top = hits[:, :k]
        count = top.sum(axis=1)
        ideal = np.cumsum(discount)[np.minimum(num_relevant, k) - 1]
        out[f'hr@{k}'] = (count > 0).astype(float)
        out[f'ndcg@{k}'] = (top * discount[:k]).sum(axis=1) / ideal
        out[f'precision@{k}'] = count / k
        out[f'recall@{k}'] = count / num_relevant
    out['mrr'] = np.where(found, 1.0 / (first + 1), 0.0)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    out['map'] = (precision_at * hits).sum(axis=1) / num_relevant
    denom = np.maximum(n_cand - 1, 1)
    out['auc'] = np.where(found, (n_cand - 1 - first) / denom, 0.0)
    return out
