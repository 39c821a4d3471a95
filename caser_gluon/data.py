"""Data for the chapter's Caser: MovieLens-100K and the sequential dataset.

This module implements the data sections of the D2L chapter "Sequence-aware
Recommender Systems": reading ML-100K, the sequence-aware split (each user's
latest interaction is held out for testing), implicit feedback, and
``SeqDataset``, which turns each user's history into sliding windows of ``L``
items followed by the item to predict. Beyond ML-100K, any ratings file is
read by :mod:`.ratings` (``load_ratings``) and each user's items are kept
as an :class:`~.interactions.ItemSets` (``load_implicit(..., as_sets=True)``),
so memory grows with the number of ratings, never with users x items.

The chapter reads ML-100K with ``d2l.read_data_ml100k``, which downloads it
from GroupLens. Where that is impossible (no network), :func:`read_ml100k`
takes the copy of ML-100K shipped inside the ``recbole==1.2.1`` wheel on PyPI
(:mod:`.movielens` fetches and caches it). MovieLens data is never part of
this repository: its licence forbids redistribution.
"""
import warnings

import numpy as np
from mxnet import gluon

from .interactions import (
    DataError,
    DataWarning,
    ItemSets,
    sample_negatives,
    stable_order,
)
from .movielens import (
    _check_checksum,
    default_cache_dir,
    fetch_ml100k,
    find_file,
    read_titles,
)
from .ratings import (
    NAMES,
    _sniff_sep,  # noqa: F401  (importable from here)
    load_ratings,
    read_ratings,
)

__all__ = [
    'ML100K_SHAPE',
    'NAMES',
    'DataError',
    'DataWarning',
    'ItemSets',
    'SeqDataset',
    'default_cache_dir',
    'fetch_ml100k',
    'load_implicit',
    'load_ratings',
    'read_ml100k',
    'read_ratings',
    'read_titles',
    'sample_negatives',
    'seen_mask',
    'split_seq_aware',
]

ML100K_SHAPE = {'rows': 100_000, 'users': 943, 'items': 1_682}


# ---------------------------------------------------------------------------
# Reading MovieLens-100K
# ---------------------------------------------------------------------------

def read_ml100k(data_dir=None):
    """Read ML-100K as ``d2l.read_data_ml100k`` does, offline if need be.

    Sources, in order: ``u.data`` in ``data_dir``, in ``$CASER_DATA_DIR``,
    in d2l's cache ``../data/ml-100k/`` or in :func:`default_cache_dir`;
    then the copy inside the ``recbole`` wheel (:func:`fetch_ml100k`).

    Returns
    -------
    df : pandas.DataFrame
        ``user_id, item_id, rating, timestamp``, 100,000 rows, 1-based ids.
    num_users : int
        943.
    num_items : int
        1,682.
    """
    path = find_file('u.data', data_dir)
    _check_checksum(path)
    df = read_ratings(path)
    num_users, num_items = df.user_id.nunique(), df.item_id.nunique()
    got = {'rows': len(df), 'users': num_users, 'items': num_items}
    if got != ML100K_SHAPE:
        raise DataError(f'{path}: not ML-100K: found {got}, expected '
                        f'{ML100K_SHAPE}')
    if df.user_id.max() != num_users or df.item_id.max() != num_items:
        raise DataError(f'{path}: ids are not 1..{num_users} and '
                        f'1..{num_items}')
    return df, num_users, num_items


# ---------------------------------------------------------------------------
# The sequence-aware split and implicit feedback
# ---------------------------------------------------------------------------

def split_seq_aware(df, num_users, num_items):
    """Hold out each user's latest interaction, as the chapter does.

    Same rows as ``d2l.split_data_ml100k(df, ..., 'seq-aware')``, vectorised:
    the test row of a user is the one with the latest timestamp (the first
    in file order among ties); training rows are sorted by user, then by
    timestamp (file order among ties). d2l drops every training row equal to
    a test row; here only the test row itself leaves training, which is the
    same on ML-100K (it has no duplicate rows).

    Parameters
    ----------
    df : pandas.DataFrame
        With columns ``user_id`` and ``timestamp`` (any others follow).
    num_users, num_items : int
        Unused; the chapter's signature.

    Returns
    -------
    train_df, test_df : pandas.DataFrame
        Columns as ``df``; ``test_df`` has one row per user, sorted by user.
    """
    if len(df) == 0:
        raise DataError('cannot split empty data')
    users = df['user_id'].to_numpy()
    stamps = df['timestamp'].to_numpy()
    order = stable_order(users, stamps)     # ties keep file order
    users, stamps = users[order], stamps[order]
    n = len(order)
    new_user = np.r_[True, users[1:] != users[:-1]]
    new_run = new_user | np.r_[True, stamps[1:] != stamps[:-1]]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    user_end = np.r_[np.flatnonzero(new_user)[1:], n] - 1
    test_pos = run_start[user_end]          # first row of the latest run
    single = int((user_end == np.flatnonzero(new_user)).sum())
    if single:
        warnings.warn(f'{single} users have a single interaction: it is '
                      'their test item, and they give no training window',
                      DataWarning, stacklevel=2)
    keep = np.ones(n, dtype=bool)
    keep[test_pos] = False
    return df.iloc[order[keep]], df.iloc[order[test_pos]]


def load_implicit(df, num_users, num_items, *, as_sets=False):
    """Turn 1-based rows into 0-based implicit feedback.

    Like ``d2l.load_data_ml100k(df, ..., feedback='implicit')``.

    Parameters
    ----------
    df : pandas.DataFrame
        1-based user ids in the first column, item ids in the second.
    num_users, num_items : int
    as_sets : bool
        Return the candidates as an :class:`ItemSets` (memory grows with
        the number of rows; use it beyond ML-100K) instead of a dict.

    Returns
    -------
    users, items : numpy.ndarray of int64, shape (n,)
        0-based ids in ``df``'s row order.
    candidates : dict of int to list of int, or ItemSets
        Each user's items: in row order (dict), or sorted and distinct
        (``ItemSets``).
    """
    users = df.iloc[:, 0].to_numpy(np.int64) - 1
    items = df.iloc[:, 1].to_numpy(np.int64) - 1
    _check_ids(users, num_users, 'user')
    _check_ids(items, num_items, 'item')
    if as_sets:
        return users, items, ItemSets.from_pairs(
            users, items, num_users=num_users, num_items=num_items)
    order = np.argsort(users, kind='stable')
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    groups = np.split(items[order], bounds)
    keys = users[order][np.r_[0, bounds]] if len(users) else []
    candidates = {int(u): g.tolist() for u, g in zip(keys, groups)}
    return users, items, candidates


def _check_ids(ids, count, what):
    """Raise :class:`DataError` if ids fall outside ``0..count-1``."""
    bad = (ids < 0) | (ids >= count)
    if bad.any():
        raise DataError(f'unknown {what} id {int(ids[bad][0]) + 1} '
                        f'(1-based): valid {what} ids are 1..{count}')


# ---------------------------------------------------------------------------
# The sequential dataset
# ---------------------------------------------------------------------------

class SeqDataset(gluon.data.Dataset):
    """Sliding windows over each user's history, as in the chapter.

    For a user whose training history is ``h`` (``c`` items in time order),
    each window is ``L + 1`` consecutive items: the first ``L`` are the
    input sequence and the last is the target. Windows slide by one item,
    from the latest back to the earliest, so a user gives ``c - L``
    windows when ``c >= L + 1``. A shorter history (``1 <= c <= L``) gives
    one window, left-padded with the padding id ``num_items``: the input is
    ``L + 1 - c`` padding ids then ``h[:-1]``, and the target ``h[-1]``.
    ``Caser`` keeps an embedding row for this padding id.

    Worked example (the chapter's figure): a user with 9 items ``0..8``,
    the latest, ``8``, held out for testing; the 8 training items with
    ``L = 5`` give 3 windows::

        seq = [2 3 4 5 6]  target = 7
        seq = [1 2 3 4 5]  target = 6
        seq = [0 1 2 3 4]  target = 5

    and the test sequence (the input used to predict the held-out item) is
    the last ``L`` training items ``[3 4 5 6 7]``.

    With ``windows='prefixes'`` (RecBole's training examples: one per
    prefix of a history), the first items are targets too, each after the
    items before it, left-padded (``P`` the padding id)::

        seq = [P 0 1 2 3]  target = 4
        seq = [P P 0 1 2]  target = 3
        seq = [P P P 0 1]  target = 2
        seq = [P P P P 0]  target = 1

    so a user gives ``c - T`` windows (at least one).

    Parameters
    ----------
    user_ids, item_ids : array-like of int, shape (n,)
        0-based training interactions, each user's in time order.
    L : int
        Length of the input sequence.
    num_users, num_items : int
    candidates : dict of int to list of int, or ItemSets
        Each user's training items; negatives are drawn outside them.
    targets : int
        ``T``, the number of next items each window predicts (the paper's
        "skip" behaviour). ``T = 1`` is the chapter's setting; with ``T >
        1`` windows have ``L + T`` items and a user gives ``c - L - T + 1``
        of them (users with fewer than ``T`` items give none, with a
        warning).
    seed : int, optional
        Seed of the negative sampler.
    windows : {'sliding', 'prefixes'}
        ``'sliding'``: windows of ``L + T`` items, a shorter history one
        padded window (the chapter); ``'prefixes'``: also every window
        whose input starts before the history, left-padded (RecBole's).

    Attributes
    ----------
    seq_users : numpy.ndarray of int32, shape (ns,)
    seq_items : numpy.ndarray of int32, shape (ns, L)
    seq_tgt : numpy.ndarray of int32, shape (ns, T)
    test_seq : numpy.ndarray of int32, shape (num_users, L)
        Each user's last ``L`` training items (left-padded).
    seen : ItemSets
        Each user's training items (``candidates`` as an ``ItemSets``);
        ``seen.contains(users, items)``, ``seen.dense(start, stop)``.
    cand : dict or ItemSets
        ``candidates`` as passed.
    num_padded_users : int
        Users whose history is shorter than ``L + 1`` (a ``DataWarning``
        says so when there are any).
    """

    def __init__(self, user_ids, item_ids, L, num_users, num_items,
                 candidates, *, targets=1, seed=None, windows='sliding'):
        L = _check_positive_int(L, 'L')
        if windows not in ('sliding', 'prefixes'):
            raise DataError(f"windows must be 'sliding' or 'prefixes', got "
                            f'{windows!r}')
        self.windows = windows
        self.T = _check_positive_int(targets, 'targets')
        users = np.asarray(user_ids, dtype=np.int64).ravel()
        items = np.asarray(item_ids, dtype=np.int64).ravel()
        if len(users) != len(items):
            raise DataError(f'user_ids has {len(users)} entries but '
                            f'item_ids has {len(items)}')
        if not len(users):
            raise DataError('no training window: no training interaction '
                            '(every user has a single interaction, their '
                            'test item, or the data is empty)')
        _check_ids(users, num_users, 'user')
        _check_ids(items, num_items, 'item')
        self.L, self.num_users, self.num_items = L, num_users, num_items
        self.pad = num_items
        self.cand = candidates
        self.seen = ItemSets.from_lists(candidates, num_users=num_users,
                                        num_items=num_items)
        full = np.flatnonzero(self.seen.counts() >= num_items)
        if len(full):
            raise DataError(f'user {int(full[0]) + 1} (1-based) has seen '
                            'every item: no negative can be drawn')
        self._build(users, items)
        self.rng = np.random.default_rng(seed)

    @property
    def nbytes(self):
        """Bytes held by the windows, test sequences and ``seen``."""
        return sum(a.nbytes for a in (self.seq_users, self.seq_items,
                                      self.seq_tgt, self.test_seq)) + \
            self.seen.nbytes

    def _build(self, users, items):
        """Vectorised windows: pad each history on the left, then index."""
        L, T = self.L, self.T
        W = L + T                       # window: L inputs, then T targets
        if (np.diff(users) < 0).any():
            order = np.argsort(users, kind='stable')
            users, items = users[order], items[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        uniq = users[starts]
        counts = np.diff(np.r_[starts, len(users)])
        too_short = counts < T
        if too_short.any():
            warnings.warn(f'T={T}: {int(too_short.sum())} users have fewer '
                          f'than T training items and give no window',
                          DataWarning, stacklevel=3)
        # each user's block in the padded array: P padding ids, then h
        P = W - 1
        pstarts = starts + P * np.arange(len(uniq))
        padded = np.full(len(items) + P * len(uniq), self.pad, np.int32)
        padded[np.arange(len(items)) + np.repeat(pstarts + P - starts,
                                                 counts)] = items
        block_ends = pstarts + P + counts
        first_end = W if self.windows == 'sliding' else T + 1
        n_win = np.where(too_short, 0,
                         np.maximum(counts - first_end + 1, 1))
        self.num_padded_users = int(((counts < W) & ~too_short).sum())
        if self.num_padded_users and self.windows == 'sliding':
            warnings.warn(f'L={L}: {self.num_padded_users} users have fewer '
                          f'than L + T = {W} training items (shortest: '
                          f'{counts.min()}); their single window is '
                          f'left-padded with id {self.pad}',
                          DataWarning, stacklevel=3)
        self.ns = int(n_win.sum())
        if not self.ns:
            raise DataError(f'no training window: every history is shorter '
                            f'than T={T}')
        # window j (0 = latest) of a user ends (exclusive) at end - j
        first = np.repeat(np.cumsum(n_win) - n_win, n_win)
        ends = np.repeat(block_ends, n_win) - (np.arange(self.ns) - first)
        self.seq_users = np.repeat(uniq, n_win).astype(np.int32)
        # row k of a sliding view of width w is padded[k:k + w]
        view = np.lib.stride_tricks.sliding_window_view
        self.seq_items = view(padded, L)[ends - W]
        self.seq_tgt = view(padded, T)[ends - T]
        self.test_seq = np.full((self.num_users, L), self.pad, np.int32)
        self.test_seq[uniq] = view(padded, L)[block_ends - L]

    def __len__(self):
        return self.ns

    def __getitem__(self, idx):
        """Return ``(user, seq (L,), target (T,), negative (T,))``.

        The negative has the target's shape, so that a model scoring
        ``(batch_size, 1)`` item ids gives positive and negative scores of
        one shape (the chapter's model squeezes both instead).
        """
        u = self.seq_users[idx]
        neg = sample_negatives(np.full(self.T, u), self.seen, self.rng)
        return (u, self.seq_items[idx], self.seq_tgt[idx],
                neg.astype(np.int32))


def seen_mask(candidates, num_users, num_items):
    """Boolean (num_users, num_items) mask of each user's training items.

    The dense reference of :class:`ItemSets` (small data and tests only:
    it needs ``num_users * num_items`` bytes). ``candidates`` is a dict of
    lists or an ``ItemSets``.
    """
    if isinstance(candidates, ItemSets):
        return candidates.dense()
    seen = np.zeros((num_users, num_items), dtype=bool)
    if candidates:
        rows = np.concatenate([np.full(len(v), u) for u, v in
                               candidates.items()])
        cols = np.concatenate([np.asarray(v, np.int64) for v in
                               candidates.values()])
        seen[rows, cols] = True
    return seen


def _check_positive_int(value, name):
    """Return ``value`` as int, or raise naming the argument."""
    if isinstance(value, bool) or not float(value).is_integer() or value < 1:
        raise DataError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


if __name__ == '__main__':
    frame, n_users, n_items = read_ml100k()
    print(f'ML-100K ready: {len(frame)} ratings, {n_users} users, '
          f'{n_items} items')
