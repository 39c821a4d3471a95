"""Interactions as arrays: (user, time) order, item sets, negatives.

The package's data errors (:class:`DataError`, :class:`DataWarning`) and
the array tools under the chapter's data sections: rows in (user, time)
order (:func:`stable_order`, for the sequence-aware split), each user's
set of items (:class:`ItemSets`) and negative sampling against it.

The chapter keeps each user's training items as ``candidates``, a dict of
lists, and its negative sampler draws items outside that set. On
MovieLens-100K a dense ``(num_users, num_items)`` mask would do; on
MovieLens-32M (200,948 users x 87,585 items) it needs 17.6 GB.
:class:`ItemSets` stores the same sets in compressed sparse rows (CSR), so
its memory grows with the number of interactions, and still answers
"has user ``u`` seen item ``i``?" for a whole batch at once
(:meth:`ItemSets.contains`). It behaves as a read-only dict, so it can
stand where the chapter passes ``candidates``.

Worked example: users 0 and 2 with items ``{3, 1}`` and ``{0}``::

    sets = ItemSets.from_pairs([0, 0, 2], [3, 1, 0], num_users=3,
                               num_items=4)
    sets.indptr   # [0, 2, 2, 3]
    sets.indices  # [1, 3, 0]
    dict(sets)    # {0: [1, 3], 2: [0]}
"""
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ['DataError', 'DataWarning', 'ItemSets', 'duplicated',
           'sample_negatives', 'stable_order']


class DataError(ValueError):
    """Raised when a ratings file or an argument cannot be used as data."""


class DataWarning(UserWarning):
    """Data that is used, but that a reader should know about."""


# ---------------------------------------------------------------------------
# Rows in (user, time) order
# ---------------------------------------------------------------------------

def stable_order(major, minor):
    """Row order by ``major``, then ``minor``, then row (a stable sort).

    One stable argsort of a combined int64 key when both columns are
    integers whose ranges allow it (MovieLens: users x seconds), else two.

    Parameters
    ----------
    major, minor : numpy.ndarray, shape (n,)

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
    """
    major, minor = np.asarray(major), np.asarray(minor)
    if len(major) and major.dtype.kind in 'iu' and minor.dtype.kind in 'iu':
        lo_a, lo_b = int(major.min()), int(minor.min())
        span_a = int(major.max()) - lo_a + 1
        span_b = int(minor.max()) - lo_b + 1
        if span_a * span_b < 2 ** 63:
            key = (major.astype(np.int64) - lo_a) * span_b
            key += minor.astype(np.int64) - lo_b
            return np.argsort(key, kind='stable')
    order = np.argsort(minor, kind='stable')
    return order[np.argsort(major[order], kind='stable')]


def _as_array(column):
    """Values of a column as a NumPy array (codes for a categorical)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy()
    return column.to_numpy()


def duplicated(df):
    """Rows equal to an earlier row in (user, item, timestamp), (n,) bool.

    Sorted by (user, timestamp), only runs of two or more rows can hold a
    duplicate; pandas checks those few rows.
    """
    users, stamps = _as_array(df.user_id), _as_array(df.timestamp)
    order = stable_order(users, stamps)
    users, stamps = users[order], stamps[order]
    same = (users[1:] == users[:-1]) & (stamps[1:] == stamps[:-1])
    tied = np.zeros(len(df), dtype=bool)
    tied[order[1:][same]] = True
    tied[order[:-1][same]] = True
    dup = np.zeros(len(df), dtype=bool)
    rows = np.flatnonzero(tied)
    if len(rows):
        dup[rows] = df.iloc[rows].duplicated(
            ['user_id', 'item_id', 'timestamp'], keep='first').to_numpy()
    return dup


# ---------------------------------------------------------------------------
# Each user's set of items
# ---------------------------------------------------------------------------



class ItemSets(Mapping):
    """Sorted, distinct item ids of each user, in CSR form.

    Parameters
    ----------
    indptr : array-like of int, shape (num_users + 1,)
        Row ``u`` is ``indices[indptr[u]:indptr[u + 1]]``.
    indices : array-like of int, shape (nnz,)
        Item ids, strictly increasing within each row.
    num_users, num_items : int

    Attributes
    ----------
    indptr : numpy.ndarray of int64, shape (num_users + 1,)
    indices : numpy.ndarray of int32 (int64 beyond 2**31 items), (nnz,)
    num_users, num_items : int

    Notes
    -----
    As a ``Mapping`` its keys are the users with at least one item, and
    ``sets[u]`` is a list of ints, as in the chapter's ``candidates``;
    ``sets == candidates`` compares the sets as dicts.
    """

    def __init__(self, indptr, indices, *, num_users, num_items):
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.indptr = np.asarray(indptr, dtype=np.int64)
        dtype = np.int32 if self.num_items < 2 ** 31 else np.int64
        self.indices = np.asarray(indices, dtype=dtype)
        if self.indptr.shape != (self.num_users + 1,) or \
                self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise DataError('indptr must have num_users + 1 entries, from 0 '
                             'to len(indices)')
        self._counts = np.diff(self.indptr)

    @classmethod
    def from_pairs(cls, users, items, *, num_users, num_items):
        """Sets from ``(user, item)`` pairs; duplicates collapse.

        Parameters
        ----------
        users, items : array-like of int, shape (n,)
            0-based ids, ``0 <= users < num_users``, ``0 <= items <
            num_items``.
        num_users, num_items : int

        Returns
        -------
        ItemSets
        """
        users = np.asarray(users, dtype=np.int64).ravel()
        items = np.asarray(items, dtype=np.int64).ravel()
        if users.shape != items.shape:
            raise DataError(f'{len(users)} users but {len(items)} items')
        for ids, count, what in ((users, num_users, 'user'),
                                 (items, num_items, 'item')):
            if len(ids) and (ids.min() < 0 or ids.max() >= count):
                bad = ids[(ids < 0) | (ids >= count)][0]
                raise DataError(f'{what} id {bad} outside 0..{count - 1}')
        keys = np.unique(users * num_items + items)
        rows = keys // num_items if num_items else keys
        indptr = np.zeros(num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=num_users), out=indptr[1:])
        return cls(indptr, keys - rows * num_items, num_users=num_users,
                   num_items=num_items)

    @classmethod
    def from_lists(cls, mapping, *, num_users, num_items):
        """Sets from a dict ``user -> iterable of items`` (``candidates``)."""
        if isinstance(mapping, ItemSets):
            return mapping
        users, items = [], []
        for u, row in mapping.items():
            row = np.fromiter(row, dtype=np.int64)
            users.append(np.full(len(row), u, dtype=np.int64))
            items.append(row)
        if not users:
            users = items = [np.zeros(0, dtype=np.int64)]
        return cls.from_pairs(np.concatenate(users), np.concatenate(items),
                              num_users=num_users, num_items=num_items)

    # -- queries ------------------------------------------------------------

    @property
    def nnz(self):
        """Number of (user, item) pairs."""
        return len(self.indices)

    @property
    def nbytes(self):
        """Bytes held by the arrays."""
        return self.indptr.nbytes + self.indices.nbytes + self._counts.nbytes

    def counts(self):
        """Number of items of each user, int64 of shape (num_users,)."""
        return self._counts.copy()

    def item_counts(self):
        """Number of users of each item, int64 of shape (num_items,)."""
        return np.bincount(self.indices, minlength=self.num_items)

    def row(self, u):
        """Sorted item ids of user ``u``, int array of shape (count,)."""
        u = int(u)
        if not 0 <= u < self.num_users:
            raise IndexError(f'user {u} outside 0..{self.num_users - 1}')
        return self.indices[self.indptr[u]:self.indptr[u + 1]]

    def contains(self, users, items):
        """Whether each ``items[k]`` is in the set of ``users[k]``.

        Parameters
        ----------
        users, items : array-like of int, shape (n,) (broadcast together)

        Returns
        -------
        numpy.ndarray of bool, shape (n,)
            False for ids outside ``0..num_users-1`` or ``0..num_items-1``
            (e.g. the padding id ``num_items``).
        """
        users, items = np.broadcast_arrays(np.asarray(users, np.int64),
                                           np.asarray(items, np.int64))
        valid = (users >= 0) & (users < self.num_users) & \
            (items >= 0) & (items < self.num_items)
        rows, want = np.where(valid, users, 0).ravel(), items.ravel()
        pos = self._search_rows(rows, want)
        found = self.indices[np.minimum(pos, max(len(self.indices) - 1, 0))] \
            if len(self.indices) else np.zeros(len(pos), self.indices.dtype)
        hit = (pos < self.indptr[rows + 1]) & (found == want)
        return valid & hit.reshape(users.shape)

    def _search_rows(self, rows, items):
        """Where ``items[k]`` would go in the sorted row ``rows[k]``.

        One vectorised binary search per row, all rows at once
        (``log2`` of the longest row steps): each probe stays inside its
        user's row, so it touches far less memory than a search over
        every pair.
        """
        lo, hi = self.indptr[rows], self.indptr[rows + 1]
        last = max(len(self.indices) - 1, 0)
        while True:
            active = lo < hi
            if not active.any():
                return lo
            mid = (lo + hi) >> 1
            right = active & (self.indices[np.minimum(mid, last)] < items)
            lo = np.where(right, mid + 1, lo)
            hi = np.where(active & ~right, mid, hi)

    def dense(self, start=0, stop=None):
        """Rows ``start..stop-1`` as a bool (stop - start, num_items) mask."""
        stop = self.num_users if stop is None else min(stop, self.num_users)
        start = max(0, min(start, stop))
        out = np.zeros((stop - start, self.num_items), dtype=bool)
        lo, hi = self.indptr[start], self.indptr[stop]
        rows = np.repeat(np.arange(stop - start), self._counts[start:stop])
        out[rows, self.indices[lo:hi]] = True
        return out

    # -- the Mapping interface (the chapter's ``candidates``) ---------------

    def __getitem__(self, u):
        if not isinstance(u, (int, np.integer)) or u not in self:
            raise KeyError(u)
        return self.row(u).tolist()

    def __contains__(self, u):
        return (isinstance(u, (int, np.integer))
                and 0 <= u < self.num_users and self._counts[u] > 0)

    def __iter__(self):
        return iter(np.flatnonzero(self._counts).tolist())

    def __len__(self):
        return int(np.count_nonzero(self._counts))

    def __repr__(self):
        return (f'ItemSets(num_users={self.num_users}, num_items='
                f'{self.num_items}, nnz={self.nnz})')


def sample_negatives(users, seen, rng, *, max_rounds=30):
    """Draw one item per entry of ``users`` that the user has not seen.

    Rejection sampling, vectorised: uniform draws, and the draws that hit
    a seen item are drawn again, ``max_rounds`` times at most; the few
    left after that (users who have seen almost every item) are drawn
    exactly from their unseen items. Given the same ``rng``, an
    :class:`ItemSets` and the equivalent dense mask give the same draws.

    Parameters
    ----------
    users : numpy.ndarray of int, shape (n,)
    seen : ItemSets or numpy.ndarray of bool, shape (num_users, num_items)
        Each user's training items (a dense mask: ``seen[u, i]``).
    rng : numpy.random.Generator
    max_rounds : int

    Returns
    -------
    numpy.ndarray of int64, shape (n,)

    Raises
    ------
    DataError
        If one of ``users`` has seen every item.
    """
    users = np.asarray(users, dtype=np.int64)
    if isinstance(seen, ItemSets):
        num_items, hit = seen.num_items, seen.contains
        full = seen._counts[users] >= num_items
    else:
        num_items = seen.shape[1]

        def hit(u, i):
            return seen[u, i]
        full = np.zeros(len(users), dtype=bool)
    _raise_if_full(users, full)
    neg = rng.integers(0, num_items, size=len(users))
    redo = np.flatnonzero(hit(users, neg))
    for _ in range(max_rounds):
        if not len(redo):
            return neg
        neg[redo] = rng.integers(0, num_items, size=len(redo))
        redo = redo[hit(users[redo], neg[redo])]
    if len(redo):
        neg[redo] = _draw_unseen(users[redo], seen, rng)
    return neg


def _draw_unseen(users, seen, rng):
    """One item per entry, uniform over the user's unseen items, exactly.

    With ``s`` a user's sorted seen items, the ``j``-th unseen item is
    ``j`` plus the number of ranks ``r`` with ``s[r] - r <= j``; the
    values ``k * num_items + s[r] - r`` (``k``: the user's rank among
    ``users``) are sorted over all users, so one ``searchsorted`` answers
    every entry.
    """
    uniq, inv = np.unique(users, return_inverse=True)
    if isinstance(seen, ItemSets):
        num_items, rows = seen.num_items, [seen.row(u) for u in uniq]
    else:
        num_items, rows = seen.shape[1], [np.flatnonzero(seen[u])
                                          for u in uniq]
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    _raise_if_full(uniq, counts >= num_items)
    shifted = np.concatenate([r - np.arange(len(r)) for r in rows]
                             + [np.zeros(0)]).astype(np.int64)
    shifted += np.repeat(np.arange(len(uniq)) * num_items, counts)
    j = rng.integers(0, num_items - counts[inv])
    below = np.searchsorted(shifted, inv * num_items + j, side='right')
    return j + below - np.r_[0, np.cumsum(counts)][inv]


def _raise_if_full(users, full):
    """Raise ``DataError`` naming the first user who has seen every item."""
    full = np.asarray(full, dtype=bool)
    if full.any():
        raise DataError(f'user {int(users[full][0]) + 1} (1-based) has seen '
                        'every item: no negative can be drawn')
