"""Evaluation of the chapter's Caser: hit rate at 50 and AUC.

The chapter evaluates with ``d2l.evaluate_ranking``: for each user, every
item not among the user's training items is scored, sorted, and the
held-out item's position gives the hit rate (in the top ``k = 50``) and the
AUC (``(n - 1 - rank) / (n - 1)`` over the ``n`` ranked items), as
``d2l.hit_and_auc`` defines them.

d2l builds one DataLoader per user and, by a slip, ranks only the item ids
below ``num_users``. :func:`evaluate_ranking` here keeps the call signature
(so it can be passed to ``d2l.train_ranking``) and the definitions, but
encodes every user once and scores all items with one matrix product, and
ranks all items unless asked for d2l's pool (``num_ranked=num_users``).

Ties: items are ranked by score, descending, ties broken by ascending item
id, which is the order a stable sort over ``d2l.evaluate_ranking``'s
candidate list gives.
"""
import numpy as onp
from mxnet import autograd, np

from .data import seen_mask
from .metrics import ranking_metrics

__all__ = [
    'evaluate_ranking',
    'hit_and_auc_from_ranks',
    'score_all_items',
    'target_ranks',
]


def score_all_items(net, seq, *, device, batch_size=4096):
    """Scores of every item for every user.

    Parameters
    ----------
    net : Caser
    seq : (num_users, L) int
        Each user's test sequence (``SeqDataset.test_seq``).
    device : mxnet.Context
        Where the user vectors are computed.

    Returns
    -------
    numpy.ndarray of float32, shape (num_users, num_items)
    """
    seq = onp.asarray(seq.asnumpy() if hasattr(seq, 'asnumpy') else seq)
    users = onp.arange(len(seq))
    vectors = []
    with autograd.predict_mode():
        for start in range(0, len(seq), batch_size):
            part = slice(start, start + batch_size)
            x = net.user_vectors(np.array(users[part], ctx=device),
                                 np.array(seq[part], ctx=device))
            vectors.append(x.asnumpy())
    x = onp.concatenate(vectors)                       # (num_users, 2k)
    q = net.Q_prime.weight.data(device).asnumpy()      # (num_items, 2k)
    b = net.b.weight.data(device).asnumpy()[:, 0]      # (num_items,)
    return x @ q.T + b


def target_ranks(scores, targets, seen):
    """0-based rank of each user's target among the user's candidates.

    Parameters
    ----------
    scores : (num_users, num_items) float
    targets : (num_users,) int
        The held-out item of each user.
    seen : (num_users, num_items) bool
        True where an item is not a candidate (a training item, or an item
        outside the ranked pool).

    Returns
    -------
    ranks : (num_users,) int64
        Candidates ranked before the target (higher score, or equal score
        and smaller id); ``-1`` where the target is not a candidate.
    num_candidates : (num_users,) int64
    """
    rows = onp.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    ids = onp.arange(scores.shape[1])
    before = (scores > target_scores) | ((scores == target_scores)
                                         & (ids < targets[:, None]))
    ranks = (before & ~seen).sum(axis=1)
    ranks[seen[rows, targets]] = -1
    return ranks, (~seen).sum(axis=1)


def hit_and_auc_from_ranks(ranks, num_candidates, k=50):
    """d2l's hit and AUC from ranks (``-1``: the target was not ranked).

    Returns
    -------
    hits : (n,) int   1 if the target is in the top ``k``.
    aucs : (n,) float ``(num_candidates - 1 - rank) / (num_candidates - 1)``.
    """
    ranked = ranks >= 0
    hits = (ranked & (ranks < k)).astype(onp.int64)
    denom = onp.maximum(num_candidates - 1, 1)
    aucs = onp.where(ranked, (num_candidates - 1 - ranks) / denom, 0.0)
    return hits, aucs


def evaluate_ranking(net, test_input, seq, candidates, num_users, num_items,
                     devices, *, k=50, num_ranked=None):
    """Mean hit rate at ``k`` and AUC over all users, like d2l's.

    Parameters
    ----------
    net : Caser
    test_input : dict of int to list of int
        Each user's held-out item(s); the first one is ranked.
    seq : (num_users, L) int
        Test sequences.
    candidates : dict of int to list of int
        Each user's training items, excluded from ranking.
    num_users, num_items : int
    devices : list of mxnet.Context
    k : int
        Cut-off of the hit rate.
    num_ranked : int, optional
        Rank only item ids below this (``num_users`` reproduces
        ``d2l.evaluate_ranking``); all items by default.

    Returns
    -------
    hit_rate, auc : float
    """
    scores = score_all_items(net, seq, device=devices[0])
    seen = _excluded(candidates, num_users, num_items, num_ranked)
    users = onp.arange(num_users)
    missing = [u for u in users if u not in test_input]
    if missing:
        raise KeyError(f'user {missing[0]} has no test item')
    targets = onp.array([test_input[u][0] for u in users])
    ranks, n = target_ranks(scores, targets, seen)
    hits, aucs = hit_and_auc_from_ranks(ranks, n, k)
    return float(hits.mean()), float(aucs.mean())


def evaluate_all(net, test_input, seq, candidates, num_users, num_items,
                 devices, *, ks=(1, 5, 10, 50), num_ranked=None):
    """Every metric of :mod:`caser_gluon.metrics`, averaged over users.

    Same arguments as :func:`evaluate_ranking`; all of each user's
    held-out items count as relevant.

    Returns
    -------
    dict of str to float
        ``hr@k``, ``ndcg@k``, ``precision@k``, ``recall@k`` for each ``k``,
        ``mrr``, ``map``, ``auc``, and ``hit_rate`` (HR@50, the chapter's).
    """
    scores = score_all_items(net, seq, device=devices[0])
    excluded = _excluded(candidates, num_users, num_items, num_ranked)
    relevant = seen_mask(test_input, num_users, num_items)
    per_user = ranking_metrics(scores, relevant, excluded,
                               ks=sorted(set(ks) | {50}))
    means = {key: float(values.mean()) for key, values in per_user.items()}
    means['hit_rate'] = means['hr@50']
    if 50 not in ks:
        for name in ['hr', 'ndcg', 'precision', 'recall']:
            means.pop(f'{name}@50')
    return means


def _excluded(candidates, num_users, num_items, num_ranked=None):
    """Mask of items that are not ranked for each user."""
    seen = seen_mask(candidates, num_users, num_items)
    if num_ranked is not None:
        seen[:, num_ranked:] = True
    return seen
