"""Evaluation of the chapter's Caser: hit rate at 50, AUC, and the rest.

The chapter evaluates with ``d2l.evaluate_ranking``: for each user, every
item not among the user's training items is scored and sorted, and the
held-out item's position gives the hit rate (in the top ``k = 50``) and the
AUC (``(n - 1 - rank) / (n - 1)`` over the ``n`` ranked items).

d2l builds one DataLoader per user and, by a slip, ranks only the item ids
below ``num_users``. Here each user is encoded once, users are scored in
blocks of bounded memory (one matrix product each: NumPy's on a CPU,
:func:`~caser_gluon.recommender.table_scores`), and every metric of
:mod:`caser_gluon.metrics` is computed block by block, so memory never
holds a ``users x items`` matrix. :func:`evaluate_ranking`
keeps d2l's call signature (it can be passed to ``d2l.train_ranking``) and
ranks all items unless asked for d2l's pool (``num_ranked=num_users``).
"""
import numpy as onp
from mxnet import autograd, np

from .interactions import ItemSets
from .metrics import (
    KS,
    block_of,
    metrics_from_ranks,
    padded_rows,
    target_ranks,
)
from .recommender import table_scores
from .runtime import check_interrupted

__all__ = [
    'BLOCK_BYTES',
    'as_item_sets',
    'evaluate_all',
    'evaluate_blocks',
    'evaluate_model',
    'evaluate_ranking',
    'model_scorer',
]

#: bytes of float32 scores held at once (a block of users x all items)
BLOCK_BYTES = 256 * 2 ** 20


def as_item_sets(sets, num_users, num_items):
    """``sets`` as ItemSets (d2l's dicts of lists are converted)."""
    if isinstance(sets, ItemSets):
        return sets
    return ItemSets.from_lists(sets, num_users=num_users,
                               num_items=num_items)


def model_scorer(net, seq, *, device, on_host=None):
    """``score(start, stop)``: scores of users ``start:stop``, all items.

    The users' vectors come from the model (MXNet). On a CPU the scores are
    one NumPy product against the item table fetched once
    (:func:`~caser_gluon.recommender.table_scores`, several times faster
    than MXNet's); on a GPU, MXNet's :meth:`score_all` on the device.

    Parameters
    ----------
    net : SequentialRecommender
    seq : (num_users, L) int
        Each user's test sequence (``SeqDataset.test_seq``).
    device : mxnet.Context
    on_host : bool, optional
        NumPy's product (True) or ``score_all`` on ``device`` (False);
        default: NumPy's on a CPU device.

    Returns
    -------
    callable
        ``score(start, stop) -> (stop - start, num_items) float32``.
    """
    seq = onp.asarray(seq.asnumpy() if hasattr(seq, 'asnumpy') else seq)
    if on_host is None:
        on_host = device.device_type == 'cpu'
    table = net.folded_output_table(device) if on_host else None

    def score(start, stop):
        users = np.arange(start, stop, ctx=device)
        items = np.array(seq[start:stop], ctx=device)
        with autograd.predict_mode():
            if not on_host:
                return net.score_all(users, items).asnumpy()
            x = net.user_vectors(users, items)
        return table_scores(x.asnumpy(), table)
    return score


def evaluate_blocks(score, *, relevant, excluded, ks=KS,
                    num_ranked=None, block_bytes=BLOCK_BYTES):
    """Mean metrics over users, scoring a block of users at a time.

    Parameters
    ----------
    score : callable
        ``score(start, stop) -> (stop - start, num_items)`` scores.
    relevant, excluded : ItemSets
        Each user's held-out items, and items not ranked for the user.
    ks : iterable of int
    num_ranked : int, optional
        Rank only item ids below this (d2l's pool).
    block_bytes : int
        Scores held at once.

    Returns
    -------
    dict of str to float
        The means of :func:`~caser_gluon.metrics.metrics_from_ranks` over
        the users with a relevant item, ``hit_rate`` (HR@50, the
        chapter's) when 50 is in ``ks``, ``eval_users`` and
        ``min_candidates`` (the fewest candidates a user had).
    """
    num_users, num_items = relevant.num_users, relevant.num_items
    step = max(1, block_bytes // (4 * num_items))
    sums, users, fewest = {}, 0, num_items
    for start in range(0, num_users, step):
        check_interrupted()               # a Ctrl-C dropped in a __del__
        stop = min(start + step, num_users)
        rel = block_of(relevant, start, stop)
        keep = rel.counts() > 0
        if not keep.any():
            continue
        ranks, n_cand = target_ranks(
            score(start, stop), padded_rows(rel, 0, stop - start),
            block_of(excluded, start, stop), num_ranked=num_ranked)
        per_user = metrics_from_ranks(ranks[keep], rel.counts()[keep],
                                      n_cand[keep], ks=ks)
        for key, values in per_user.items():
            sums[key] = sums.get(key, 0.0) + float(values.sum())
        users += int(keep.sum())
        fewest = min(fewest, int(n_cand[keep].min()))
    if not users:
        raise ValueError('no user has a held-out item to evaluate')
    means = {key: total / users for key, total in sums.items()}
    if 'hr@50' in means:
        means['hit_rate'] = means['hr@50']
    return dict(means, eval_users=users, min_candidates=fewest)


def evaluate_model(net, *, test_seq, relevant, excluded, device,
                   ks=KS, num_ranked=None):
    """:func:`evaluate_blocks` of a model's scores (see there)."""
    return evaluate_blocks(model_scorer(net, test_seq, device=device),
                           relevant=relevant, excluded=excluded, ks=ks,
                           num_ranked=num_ranked)


def evaluate_all(net, test_input, seq, candidates, num_users, num_items,
                 devices, *, ks=KS, num_ranked=None):
    """Every metric, with :func:`evaluate_ranking`'s arguments.

    All of each user's held-out items count as relevant. ``test_input``
    and ``candidates`` may be d2l's dicts or ItemSets.
    """
    return evaluate_model(
        net, test_seq=seq, device=devices[0], ks=ks, num_ranked=num_ranked,
        relevant=as_item_sets(test_input, num_users, num_items),
        excluded=as_item_sets(candidates, num_users, num_items))


def evaluate_ranking(net, test_input, seq, candidates, num_users, num_items,
                     devices, *, k=50, num_ranked=None):
    """Mean hit rate at ``k`` and AUC over all users, like d2l's.

    Parameters
    ----------
    net : SequentialRecommender
    test_input : dict of int to list of int, or ItemSets
        Each user's held-out item(s): every user must have one.
    seq : (num_users, L) int
        Test sequences.
    candidates : dict of int to list of int, or ItemSets
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
    if not isinstance(test_input, ItemSets):    # d2l ranks the first item
        test_input = {u: list(v)[:1] for u, v in test_input.items()}
    relevant = as_item_sets(test_input, num_users, num_items)
    missing = onp.flatnonzero(relevant.counts() == 0)
    if len(missing):
        raise KeyError(f'user {missing[0]} has no test item')
    means = evaluate_all(net, relevant, seq, candidates, num_users,
                         num_items, devices, ks=(k,), num_ranked=num_ranked)
    return means[f'hr@{k}'], means['auc']
