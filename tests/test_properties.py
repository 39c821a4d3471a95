"""Property tests (hypothesis) of the data path on random histories."""
import warnings

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from caser_gluon import data as data_lib

histories = st.lists(
    st.lists(st.integers(0, 14), min_size=1, max_size=12, unique=True),
    min_size=1, max_size=8)


def build(hists, L, num_items=15):
    users = np.concatenate([[u] * len(h) for u, h in enumerate(hists)])
    items = np.concatenate([np.array(h, dtype=np.int64) for h in hists])
    candidates = {u: list(h) for u, h in enumerate(hists)}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', data_lib.DataWarning)
        return data_lib.SeqDataset(users, items, L, len(hists), num_items,
                                   candidates, seed=0)


@settings(max_examples=60, deadline=None)
@given(hists=histories, L=st.integers(1, 6))
def test_windows_hold_for_random_histories(hists, L):
    ds = build(hists, L)
    pad = ds.pad
    assert len(ds) == sum(max(len(h) - L, 1) for h in hists)
    for k in range(len(ds)):
        u = int(ds.seq_users[k])
        h = hists[u]
        window = [i for i in ds.seq_items[k] if i != pad] + [ds.seq_tgt[k, 0]]
        # a window is a run of consecutive items of the user's history
        start = h.index(window[0])
        assert h[start:start + len(window)] == [int(i) for i in window]
        # padding only on the left, and only for short histories
        n_pad = int((ds.seq_items[k] == pad).sum())
        assert (ds.seq_items[k][:n_pad] == pad).all()
        assert n_pad == max(L + 1 - len(h), 0)
    for u, h in enumerate(hists):
        tail = [pad] * max(L - len(h), 0) + h[-L:]
        assert ds.test_seq[u].tolist() == tail


@settings(max_examples=40, deadline=None)
@given(hists=histories, L=st.integers(1, 4), seed=st.integers(0, 99))
def test_negatives_never_seen(hists, L, seed):
    ds = build(hists, L)
    rng = np.random.default_rng(seed)
    users = rng.integers(0, len(hists), 500)
    neg = data_lib.sample_negatives(users, ds.seen, rng)
    for u, n in zip(users, neg):
        assert int(n) not in hists[u]


rows = st.lists(st.tuples(st.integers(1, 6), st.integers(1, 20),
                          st.integers(1, 5), st.integers(0, 9)),
                min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(rows=rows)
def test_split_never_puts_test_item_in_training(rows):
    df = pd.DataFrame(rows, columns=data_lib.NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', data_lib.DataWarning)
        train, test = data_lib.split_seq_aware(df, 6, 20)
    assert len(train) + len(test) == len(df)
    assert test.user_id.is_unique
    assert set(test.user_id) == set(df.user_id)
    for _, row in test.iterrows():
        mine = df[df.user_id == row.user_id]
        assert row.timestamp == mine.timestamp.max()
        # the first row of the latest timestamp, in file order
        first = mine[mine.timestamp == row.timestamp].index[0]
        assert (df.loc[first] == row).all()
        later = train[(train.user_id == row.user_id)
                      & (train.timestamp > row.timestamp)]
        assert later.empty
    # the held-out row itself is not in training
    assert not set(test.index) & set(train.index)
