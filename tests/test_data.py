"""Tests of caser_gluon.data: reading, the split, SeqDataset's windows."""
import numpy as np
import pandas as pd
import pytest

from caser_gluon import data as data_lib
from caser_gluon.data import DataError, SeqDataset


def reference_windows(users, items, L, num_users, pad):
    """Straightforward per-user loops: windows, targets, test sequences."""
    histories = {}
    for u, i in zip(users, items):
        histories.setdefault(int(u), []).append(int(i))
    seq_users, seqs, targets = [], [], []
    test_seq = np.full((num_users, L), pad)
    for u in sorted(histories):
        h = histories[u]
        padded = [pad] * L + h
        test_seq[u] = padded[-L:]
        if len(h) >= L + 1:
            ends = range(len(padded), 2 * L, -1)
        else:
            ends = [len(padded)]
        for end in ends:
            seq_users.append(u)
            seqs.append(padded[end - L - 1:end - 1])
            targets.append(padded[end - 1])
    return (np.array(seq_users), np.array(seqs), np.array(targets),
            test_seq)


def make_dataset(histories, L, num_items=20, seed=0):
    users = np.concatenate([[u] * len(h) for u, h in enumerate(histories)])
    items = np.concatenate(histories)
    _, _, candidates = data_lib.load_implicit(
        pd.DataFrame({'u': users + 1, 'i': items + 1}), len(histories),
        num_items)
    return SeqDataset(users, items, L, len(histories), num_items, candidates,
                      seed=seed), users, items


def test_chapter_example_gives_three_windows():
    # 9 items, the latest held out: 8 training items, L = 5
    ds, _, _ = make_dataset([list(range(8))], L=5)
    assert len(ds) == 3
    np.testing.assert_array_equal(
        ds.seq_items, [[2, 3, 4, 5, 6], [1, 2, 3, 4, 5], [0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(ds.seq_tgt[:, 0], [7, 6, 5])
    np.testing.assert_array_equal(ds.test_seq[0], [3, 4, 5, 6, 7])


def test_short_histories_are_left_padded():
    ds, _, _ = make_dataset([[4, 9], [7], list(range(10, 16))], L=4)
    pad = ds.pad
    assert pad == 20
    # user 0: 2 items -> 1 window; user 1: 1 item -> 1; user 2: 6 -> 2
    assert len(ds) == 4
    np.testing.assert_array_equal(ds.seq_users, [0, 1, 2, 2])
    np.testing.assert_array_equal(ds.seq_items[0], [pad, pad, pad, 4])
    assert ds.seq_tgt[0, 0] == 9
    np.testing.assert_array_equal(ds.seq_items[1], [pad] * 4)
    assert ds.seq_tgt[1, 0] == 7
    np.testing.assert_array_equal(ds.test_seq[0], [pad, pad, 4, 9])
    np.testing.assert_array_equal(ds.test_seq[1], [pad, pad, pad, 7])


@pytest.mark.parametrize('L', [1, 3, 5, 8])
def test_windows_equal_reference_on_random_histories(L):
    rng = np.random.default_rng(L)
    histories = [list(rng.choice(30, size=rng.integers(1, 15),
                                 replace=False)) for _ in range(12)]
    ds, users, items = make_dataset(histories, L, num_items=30)
    ref_users, ref_seqs, ref_tgt, ref_test = reference_windows(
        users, items, L, 12, ds.pad)
    np.testing.assert_array_equal(ds.seq_users, ref_users)
    np.testing.assert_array_equal(ds.seq_items, ref_seqs)
    np.testing.assert_array_equal(ds.seq_tgt[:, 0], ref_tgt)
    np.testing.assert_array_equal(ds.test_seq, ref_test)


def test_getitem_shapes_and_negatives_never_seen():
    ds, _, _ = make_dataset([[0, 1, 2, 3, 4, 5, 6], [7, 8, 9]], L=3,
                            num_items=12)
    for idx in range(len(ds)):
        for _ in range(50):
            user, seq, target, neg = ds[idx]
            assert seq.shape == (3,) and target.shape == (1,)
            assert neg.shape == (1,)
            assert int(neg[0]) not in ds.cand[int(user)]
            assert 0 <= int(neg[0]) < 12


def test_sample_negatives_vectorised_excludes_seen():
    rng = np.random.default_rng(0)
    seen = rng.random((50, 40)) < 0.8
    seen[:, 0] = False          # every user keeps one unseen item
    users = rng.integers(0, 50, size=10_000)
    neg = data_lib.sample_negatives(users, seen, rng)
    assert neg.shape == (10_000,)
    assert not seen[users, neg].any()


def test_negatives_are_seeded():
    a, _, _ = make_dataset([list(range(10))], L=3, seed=7)
    b, _, _ = make_dataset([list(range(10))], L=3, seed=7)
    assert [int(a[i][3][0]) for i in range(7)] == \
        [int(b[i][3][0]) for i in range(7)]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(DataError, match='L must be a positive integer'):
        make_dataset([[1, 2, 3]], L=0)
    with pytest.raises(DataError, match='unknown item id'):
        SeqDataset([0], [25], 2, 1, 20, {0: [25]})
    with pytest.raises(DataError, match='no training window: no training'):
        SeqDataset([], [], 2, 1, 20, {})
    with pytest.raises(DataError, match='has seen every item'):
        make_dataset([[0, 1, 2]], L=2, num_items=3)


# ---------------------------------------------------------------------------
# Reading ratings files
# ---------------------------------------------------------------------------

def write(tmp_path, text, name='u.data'):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_ratings_parses_rows(tmp_path):
    path = write(tmp_path, '1\t2\t3\t100\n2\t1\t5\t90\n')
    df = data_lib.read_ratings(path)
    assert list(df.columns) == ['user_id', 'item_id', 'rating', 'timestamp']
    assert df.to_numpy().tolist() == [[1, 2, 3, 100], [2, 1, 5, 90]]


@pytest.mark.parametrize('text, message', [
    ('1\t2\t3\t100\n2\tx\t5\t90\n', r'line 2: item_id is not an integer'),
    ('1\t2\t3\t100\n2\t1\t9\t90\n', r'line 2: rating 9 outside 1..5'),
    ('1\t2\t3\n', r'expected 4 fields'),
    ('1\t2\t3\t100\n2\t1\t5\t90\t7\n', r'expected 4 fields'),
    ('1\t2\t3.5\t100\n', r'line 1: rating is not an integer'),
    ('0\t2\t3\t100\n', r'line 1: user and item ids must be >= 1'),
])
def test_malformed_ratings_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as err:
        data_lib.read_ratings(path)
    assert str(path) in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match='not found'):
        data_lib.read_ratings(tmp_path / 'nope.data')
    with pytest.raises(DataError, match='empty'):
        data_lib.read_ratings(write(tmp_path, ''))


def test_read_ml100k_rejects_other_data(tmp_path):
    write(tmp_path, '1\t2\t3\t100\n2\t1\t5\t90\n')
    with pytest.raises(DataError, match='not ML-100K'):
        data_lib.read_ml100k(tmp_path)


# ---------------------------------------------------------------------------
# ML-100K
# ---------------------------------------------------------------------------

def test_ml100k_shape(ml100k):
    df, num_users, num_items = ml100k
    assert (len(df), num_users, num_items) == (100_000, 943, 1_682)
    assert df.rating.between(1, 5).all()
    assert df.iloc[0].tolist() == [196, 242, 3, 881250949]


def test_split_holds_out_latest_interaction(ml100k_split):
    train_df, test_df = ml100k_split['train_df'], ml100k_split['test_df']
    assert len(test_df) == 943 and len(train_df) == 99_057
    assert test_df.user_id.tolist() == list(range(1, 944))
    latest = train_df.groupby('user_id').timestamp.max()
    assert (test_df.set_index('user_id').timestamp >= latest).all()
    users = train_df.user_id.to_numpy()
    assert (np.diff(users) >= 0).all()
    same = users[1:] == users[:-1]
    assert (np.diff(train_df.timestamp.to_numpy())[same] >= 0).all()


@pytest.mark.slow
def test_split_equals_d2l(ml100k):
    from d2l import mxnet as d2l
    df, num_users, num_items = ml100k
    ours_train, ours_test = data_lib.split_seq_aware(df, num_users,
                                                     num_items)
    d2l_train, d2l_test = d2l.split_data_ml100k(df, num_users, num_items,
                                                'seq-aware')
    np.testing.assert_array_equal(ours_train.to_numpy(),
                                  d2l_train.to_numpy())
    d2l_test = d2l_test.sort_values(0, kind='stable')
    np.testing.assert_array_equal(ours_test.to_numpy(), d2l_test.to_numpy())


def test_load_implicit_matches_d2l(ml100k_split):
    from d2l import mxnet as d2l
    train_df = ml100k_split['train_df']
    users, items, _, cand = d2l.load_data_ml100k(train_df, 943, 1682,
                                                 feedback='implicit')
    np.testing.assert_array_equal(ml100k_split['users'], users)
    np.testing.assert_array_equal(ml100k_split['items'], items)
    assert ml100k_split['candidates'] == cand


def test_ml100k_windows(ml100k_split):
    s = ml100k_split
    ds = SeqDataset(s['users'], s['items'], 5, 943, 1682, s['candidates'])
    assert len(s['users']) == 99_057
    assert len(ds) == 94_342
    ref_users, ref_seqs, ref_tgt, ref_test = reference_windows(
        s['users'], s['items'], 5, 943, ds.pad)
    np.testing.assert_array_equal(ds.seq_users, ref_users)
    np.testing.assert_array_equal(ds.seq_items, ref_seqs)
    np.testing.assert_array_equal(ds.seq_tgt[:, 0], ref_tgt)
    np.testing.assert_array_equal(ds.test_seq, ref_test)
    assert (ds.seq_items != ds.pad).all()   # ML-100K needs no padding


def test_duplicates_are_kept_counted_and_reported(tmp_path):
    path = write(tmp_path, '1\t2\t3\t100\n1\t2\t4\t100\n2\t1\t5\t90\n')
    with pytest.warns(data_lib.DataWarning, match='1 duplicate .* line 2'):
        df = data_lib.read_ratings(path)
    assert len(df) == 3 and df.attrs['duplicates'] == 1


def test_single_interaction_users_are_reported():
    df = pd.DataFrame([[1, 1, 5, 1], [1, 2, 5, 2], [2, 3, 5, 1]],
                      columns=data_lib.NAMES)
    with pytest.warns(data_lib.DataWarning, match='1 users have a single'):
        train, test = data_lib.split_seq_aware(df, 2, 3)
    assert train.user_id.tolist() == [1] and test.user_id.tolist() == [1, 2]


def test_padding_is_reported():
    with pytest.warns(data_lib.DataWarning, match='1 users have fewer'):
        ds, _, _ = make_dataset([[1, 2], list(range(3, 9))], L=4)
    assert ds.num_padded_users == 1


def test_checksum_mismatch_is_an_error(tmp_path):
    write(tmp_path, '1\t2\t3\t100\n')
    (tmp_path / 'u.data.sha256').write_text('0' * 64 + '\n')
    with pytest.raises(DataError, match='checksum'):
        data_lib.read_ml100k(tmp_path)


def test_multi_target_windows():
    # 8 items, L = 3, T = 2: windows of 5 items, 8 - 5 + 1 = 4 of them
    histories = [list(range(8))]
    users = np.zeros(8, dtype=int)
    ds = SeqDataset(users, histories[0], 3, 1, 20, {0: histories[0]},
                    targets=2)
    assert len(ds) == 4
    np.testing.assert_array_equal(ds.seq_items[0], [3, 4, 5])
    np.testing.assert_array_equal(ds.seq_tgt[0], [6, 7])
    np.testing.assert_array_equal(ds.seq_items[-1], [0, 1, 2])
    np.testing.assert_array_equal(ds.seq_tgt[-1], [3, 4])
    np.testing.assert_array_equal(ds.test_seq[0], [5, 6, 7])
    _, _, target, neg = ds[0]
    assert target.shape == neg.shape == (2,)
    with pytest.warns(data_lib.DataWarning, match='fewer than T'):
        short = SeqDataset([0, 1, 1, 1], [1, 2, 3, 4], 2, 2, 20,
                           {0: [1], 1: [2, 3, 4]}, targets=2)
    assert short.seq_users.tolist() == [1]
    np.testing.assert_array_equal(short.seq_items[0], [20, 2])


@pytest.mark.parametrize('sep', ['::', ',', '\t'])
def test_load_ratings_remaps_filters_and_sniffs(tmp_path, sep):
    rows = [(10, 7, 5, 1), (10, 9, 4, 2), (30, 7, 4, 3), (30, 9, 4, 4),
            (20, 7, 5, 5), (30, 5, 5, 6), (40, 9, 1, 7), (40, 7, 2, 8)]
    text = '\n'.join(sep.join(map(str, r)) for r in rows) + '\n'
    path = write(tmp_path, text, 'ratings.dat')
    df, num_users, num_items, info = data_lib.load_ratings(
        path, min_rating=3, k_core=2)
    # rating >= 3 drops user 40; the 2-core drops user 20 and item 5
    # (one rating each), leaving users 10, 30 and items 7, 9
    assert (num_users, num_items) == (2, 2)
    assert info['user_ids'].tolist() == [10, 30]
    assert info['item_ids'].tolist() == [7, 9]
    assert df.to_numpy().tolist() == [[1, 1, 5, 1], [1, 2, 4, 2],
                                      [2, 1, 4, 3], [2, 2, 4, 4]]
    assert info['rows_read'] == 8 and info['rows_kept'] == 4
    assert len(info['sha256']) == 64


def test_load_ratings_header_and_float_ratings(tmp_path):
    path = write(tmp_path, 'userId,movieId,rating,timestamp\n'
                           '5,3,4.5,10\n5,4,3.0,11\n8,3,2.5,12\n',
                 'ratings.csv')
    df, num_users, num_items, _ = data_lib.load_ratings(path)
    assert (num_users, num_items) == (2, 2)
    assert df.rating.tolist() == [4.5, 3.0, 2.5]
    assert df.user_id.tolist() == [1, 1, 2]
    bad = write(tmp_path, 'userId,movieId,rating,timestamp\n5,x,4.5,10\n',
                'bad.csv')
    with pytest.raises(DataError, match='line 2: item_id is not an integer'):
        data_lib.load_ratings(bad, ids='int')
    with pytest.raises(DataError, match='no rating left'):
        data_lib.load_ratings(path, min_rating=5)


# ---------------------------------------------------------------------------
# Large-data routes: vectorised split, ItemSets candidates
# ---------------------------------------------------------------------------

def reference_split(df):
    """Per-user loops: the latest row (first in file order) is the test row.
    """
    rows = {}
    for pos, (u, t) in enumerate(zip(df.user_id, df.timestamp)):
        rows.setdefault(u, []).append((t, pos))
    train, test = [], []
    for u in sorted(rows):
        history = sorted(rows[u])                 # by time, then file order
        latest = max(t for t, _ in history)
        held = min(pos for t, pos in history if t == latest)
        test.append(held)
        train += [pos for _, pos in history if pos != held]
    return train, test


@pytest.mark.parametrize('seed', range(5))
def test_split_equals_loop_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 400
    df = pd.DataFrame({'user_id': rng.integers(1, 30, n),
                       'item_id': rng.integers(1, 50, n),
                       'rating': rng.integers(1, 6, n),
                       'timestamp': rng.integers(0, 6, n) * 10 ** 9},
                      index=rng.permutation(n) + 1000)
    if seed == 4:
        df['timestamp'] = df.timestamp / 7.0        # float timestamps
    train, test = data_lib.split_seq_aware(df, 30, 50)
    ref_train, ref_test = reference_split(df)
    pd.testing.assert_frame_equal(train, df.iloc[ref_train])
    pd.testing.assert_frame_equal(test, df.iloc[ref_test])


def test_item_sets_route_equals_dict_route(ml100k_split):
    s = ml100k_split
    users, items, sets = data_lib.load_implicit(s['train_df'], 943, 1682,
                                                as_sets=True)
    np.testing.assert_array_equal(users, s['users'])
    np.testing.assert_array_equal(items, s['items'])
    assert sets == {u: sorted(set(v)) for u, v in s['candidates'].items()}
    a = SeqDataset(users, items, 5, 943, 1682, sets, seed=3)
    b = SeqDataset(users, items, 5, 943, 1682, s['candidates'], seed=3)
    assert a.cand is sets and b.cand is s['candidates']
    np.testing.assert_array_equal(a.seen.dense(),
                                  data_lib.seen_mask(b.cand, 943, 1682))
    for name in ('seq_users', 'seq_items', 'seq_tgt', 'test_seq'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert [int(a[k][3][0]) for k in range(20)] == \
        [int(b[k][3][0]) for k in range(20)]
    nnz = sum(len(set(v)) for v in s['candidates'].values())
    assert a.seen.nbytes == 944 * 8 + nnz * 4 + 943 * 8    # CSR, counts
    assert a.nbytes == a.seen.nbytes + a.seq_users.nbytes + \
        a.seq_items.nbytes + a.seq_tgt.nbytes + a.test_seq.nbytes


def test_missing_titles_name_the_file(tmp_path, monkeypatch):
    data_dir = tmp_path / 'ml'
    write(data_dir.parent, '', 'placeholder')
    data_dir.mkdir()
    write(data_dir, '1\t2\t3\t100\n')
    monkeypatch.setenv('CASER_DATA_DIR', str(data_dir))
    monkeypatch.chdir(data_dir)                   # no ../data/ml-100k
    with pytest.raises(DataError, match='u.item: .*not found'):
        data_lib.read_titles(data_dir)
