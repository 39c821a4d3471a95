"""Each user's set of items, compressed: memory linear in the ratings.

Placeholder with the agreed API (replaced by the data-scale branch).
"""
from collections.abc import Mapping

import numpy as np

__all__ = ['ItemSets']


class ItemSets(Mapping):
    """Sorted item ids of each user in CSR form (``indptr``, ``indices``)."""

    def __init__(self, indptr, indices, *, num_items):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_users, self.num_items = len(self.indptr) - 1, num_items

    @classmethod
    def from_pairs(cls, users, items, *, num_users, num_items):
        """From 0-based (user, item) pairs; duplicates collapse."""
        keys = np.unique(np.asarray(users, np.int64) * num_items
                         + np.asarray(items, np.int64))
        rows = keys // num_items
        indptr = np.zeros(num_users + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=num_users), out=indptr[1:])
        return cls(indptr, keys % num_items, num_items=num_items)

    @classmethod
    def from_lists(cls, mapping, *, num_users, num_items):
        """From a dict ``user -> items`` (d2l's ``candidates``)."""
        pairs = [(np.full(len(v), u), np.asarray(v, np.int64))
                 for u, v in mapping.items() if len(v)]
        if not pairs:
            return cls(np.zeros(num_users + 1), [], num_items=num_items)
        users, items = map(np.concatenate, zip(*pairs))
        return cls.from_pairs(users, items, num_users=num_users,
                              num_items=num_items)

    def counts(self):
        """(num_users,) int64: items per user."""
        return np.diff(self.indptr)

    def row(self, u):
        """Sorted item ids of user ``u``."""
        return self.indices[self.indptr[u]:self.indptr[u + 1]]

    def contains(self, users, items):
        """(n,) bool: whether each ``items[j]`` is in ``users[j]``'s set."""
        keys = np.repeat(np.arange(self.num_users, dtype=np.int64)
                         * self.num_items, self.counts()) + self.indices
        query = (np.asarray(users, np.int64) * self.num_items
                 + np.asarray(items, np.int64))
        pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
        return (keys[pos] == query) if len(keys) else np.zeros(len(query),
                                                               bool)

    def dense(self, start=0, stop=None):
        """Bool (stop - start, num_items) block of rows."""
        stop = self.num_users if stop is None else stop
        out = np.zeros((stop - start, self.num_items), dtype=bool)
        lo, hi = self.indptr[start], self.indptr[stop]
        rows = np.repeat(np.arange(stop - start), self.counts()[start:stop])
        out[rows, self.indices[lo:hi]] = True
        return out

    def __getitem__(self, u):
        if not 0 <= u < self.num_users or not self.counts()[u]:
            raise KeyError(u)
        return self.row(u).tolist()

    def __iter__(self):
        return iter(np.flatnonzero(self.counts()).tolist())

    def __len__(self):
        return int((self.counts() > 0).sum())
