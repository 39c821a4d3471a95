"""Tests of caser_gluon.ratings: the fast reader against the slow one."""
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caser_gluon import ratings as R
from caser_gluon.interactions import (
    DataError,
    DataWarning,
    duplicated,
    stable_order,
)


def write(tmp_path, text, name='ratings.dat', encoding='utf-8'):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def rules(path, sep='\t', ids='int', integer_ratings=True, low=1, high=5):
    header = R._is_header(R._first_line(path), sep)
    return R._Rules(path, sep, header, ids, integer_ratings, low, high)


def slow_error(path, **kwargs):
    """The message of the line-by-line reader on ``path``."""
    with pytest.raises(DataError) as err:
        R._read_slow(rules(path, **kwargs))
    return str(err.value)


BAD = [
    ('1\t2\t3\t100\n2\tx\t5\t90\n', 'line 2: item_id is not an integer'),
    ('1\t2\t3\t100\n2\t1\t9\t90\n', 'line 2: rating 9 outside 1..5'),
    ('1\t2\t3\n', 'line 1: expected 4 fields'),
    ('1\t2\t3\t100\n2\t1\t5\t90\t7\n', 'line 2: expected 4 fields'),
    ('1\t2\t3.5\t100\n', 'line 1: rating is not an integer'),
    ('0\t2\t3\t100\n', 'line 1: user and item ids must be >= 1'),
    ('1\t2\t3\t100\ninf\t1\t5\t90\n', 'line 2: user_id is not an integer'),
    ('1\t2\t3\t100\n1e400\t1\t5\t9\n', 'line 2: user_id is not an integer'),
    ('1\t2\t3\t100\n3\tnan\t5\t90\n', 'line 2: item_id is not an integer'),
    ('1\t99999999999999999999\t3\t1\n', 'line 1: item_id is not an integer'),
    ('1\t2\t3\t100\n1\t\t3\t100\n', 'line 2: item_id is not an integer'),
    ('1\t2\t3\t1.5\n', 'line 1: timestamp is not an integer'),
    ('1\t2\tinf\t1\n', 'line 1: rating is not an integer'),
    ('1\t2\t3\t100\n\n7\t2\t5\tx\n', 'line 3: timestamp is not an integer'),
]


@pytest.mark.parametrize('text, message', BAD)
def test_fast_reader_errors_equal_slow_reader(tmp_path, text, message):
    path = write(tmp_path, text)
    assert R._read_fast(rules(path), (False, False)) is None
    with pytest.raises(DataError, match=message) as err:
        R.read_ratings(path)
    assert str(err.value) == slow_error(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize('text, message', [
    ('1::2::3::4\n5::6::7\n', 'line 2: expected 4 fields'),
    ('1::2::3::4\n5::6:x:7::8\n', 'line 2: expected 4 fields'),
    ('1::2::3::4\n5::6::7::8::9\n', 'line 2: expected 4 fields'),
    ('1::2::3::4\n5::6::7::\n', 'line 2: timestamp is not an integer'),
    ('1::2::3::4\nnan::6::7::8\n', 'line 2: user_id is not an integer'),
])
def test_double_colon_files_name_the_line(tmp_path, text, message):
    path = write(tmp_path, text)
    assert R._read_fast(rules(path, sep='::'), (False, False)) is None
    with pytest.raises(DataError, match=message) as err:
        R.read_ratings(path, sep='auto')
    assert str(err.value) == slow_error(path, sep='::')


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(DataError, match='not a file'):
        R.read_ratings(tmp_path)
    with pytest.raises(DataError, match='ratings file not found'):
        R.load_ratings(tmp_path / 'nope.csv')
    if os.geteuid() == 0:
        return                    # root reads any file
    path = write(tmp_path, '1\t2\t3\t4\n')
    path.chmod(0)
    with pytest.raises(DataError, match='cannot be read') as err:
        R.read_ratings(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize('text', [
    '1\t2\t3\t100\n2\t1\t5\t90\n',
    'userId\tmovieId\trating\ttimestamp\n1\t2\t3\t100\n2\t1\t5\t90\n',
])
def test_byte_order_mark_is_ignored(tmp_path, text):
    path = write(tmp_path, '\ufeff' + text)
    df = R.read_ratings(path)
    assert df.to_numpy().tolist() == [[1, 2, 3, 100], [2, 1, 5, 90]]
    df, *_ = R.load_ratings(path)
    assert df.user_id.tolist() == [1, 2]


GOOD = [
    ('\t', '1\t2\t3\t100\n2\t1\t5.0\t90\n\n3\t7\t4\t90\n  \n'),
    (',', 'u,i,r,t\n10,2,3.5,100\n9,1,5,90\n100,1,0.5,91.0\n'),
    ('::', '1::2::3::978300760\n2::1::5::978302109\n'),
    (',', 'A1B,B0001,4.5,10\nA2,B0001,3,11\nA1B,B0002,2,12\n'),
    ('\t', 'f00\t1\t3\t1\n7\t2\t4\t2\n'),
    (',', 'u,i,r,t\n1,2,3,1.5\n2,3,4,2\n'),
]


@pytest.mark.parametrize('sep, text', GOOD)
def test_fast_reader_equals_slow_reader(tmp_path, sep, text):
    path = write(tmp_path, text)
    kwargs = {'sep': sep, 'ids': 'auto', 'integer_ratings': False,
              'low': None, 'high': None}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DataWarning)
        fast = R.read_ratings(path, sep=sep, ids='auto', min_rating=None,
                              max_rating=None, integer_ratings=False)
        slow = R._read_slow(rules(path, **kwargs))
    pd.testing.assert_frame_equal(fast, slow)


@pytest.mark.parametrize('sep, text', GOOD[:-1])   # not float timestamps
def test_chunks_join_into_one_frame(tmp_path, sep, text):
    path = write(tmp_path, text)
    kwargs = {'sep': sep, 'ids': 'token', 'integer_ratings': False,
              'low': None, 'high': None}
    whole = R._read_fast(rules(path, **kwargs), (True, True))
    pieces = R._read_fast(rules(path, **kwargs), (True, True), chunksize=1)
    pd.testing.assert_frame_equal(pieces, whole, check_categorical=False)
    pd.testing.assert_frame_equal(pieces, R._read_slow(
        rules(path, **kwargs)), check_categorical=False)


def test_string_ids_round_trip(tmp_path):
    rows = [('A3X', 'B07', 5, 3), ('A1', 'B07', 4, 1), ('A3X', '0553', 3, 2),
            ('zz', 'B07', 2, 9), ('A1', 'x y', 1, 4)]
    text = '\n'.join(','.join(map(str, r)) for r in rows) + '\n'
    with warnings.catch_warnings():
        warnings.simplefilter('error')          # '0553' is a valid token
        df, num_users, num_items, info = R.load_ratings(
            write(tmp_path, text))
    assert (num_users, num_items) == (3, 3)
    assert info['user_ids'].tolist() == ['A1', 'A3X', 'zz']
    assert info['item_ids'].tolist() == ['0553', 'B07', 'x y']
    users = info['user_ids'][df.user_id.to_numpy() - 1]
    items = info['item_ids'][df.item_id.to_numpy() - 1]
    assert list(zip(users, items)) == [r[:2] for r in rows]
    assert df.timestamp.tolist() == [3, 1, 2, 9, 4]
    with pytest.raises(DataError, match='line 1: user_id is not an int'):
        R.load_ratings(tmp_path / 'ratings.dat', ids='int')


def test_integer_ids_keep_numeric_order(tmp_path):
    path = write(tmp_path, '10,5,1,1\n9,50,1,2\n100,5,1,3\n')
    df, _, _, info = R.load_ratings(path)
    assert info['user_ids'].tolist() == [9, 10, 100]
    assert info['item_ids'].tolist() == [5, 50]
    assert df.user_id.tolist() == [2, 1, 3]
    _, _, _, tokens = R.load_ratings(path, ids='token')
    assert tokens['user_ids'].tolist() == ['10', '100', '9']


def test_mixed_id_column_is_read_as_tokens_with_a_warning(tmp_path):
    path = write(tmp_path, '1,5,1,1\n2,5,1,2\nnan,6,1,3\n')
    with pytest.warns(DataWarning, match="user_id read as string tokens, "
                      "but 'nan' looks like a broken number"):
        _, _, _, info = R.load_ratings(path)
    assert info['user_ids'].tolist() == ['1', '2', 'nan']


def reference_k_core(rows, k):
    rows = list(rows)
    while True:
        users = pd.Series([r[0] for r in rows]).value_counts()
        items = pd.Series([r[1] for r in rows]).value_counts()
        kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8),
                               st.integers(1, 5), st.integers(0, 99)),
                     min_size=1, max_size=60),
       k=st.integers(0, 4), sep=st.sampled_from(['\t', ',', '::']))
def test_load_ratings_equals_a_loop_reference(tmp_path_factory, rows, k,
                                              sep):
    path = tmp_path_factory.mktemp('r') / 'ratings.dat'
    path.write_text(''.join(sep.join(map(str, r)) + '\n' for r in rows))
    kept = reference_k_core(rows, k) if k > 1 else rows
    if not kept:
        with pytest.raises(DataError, match='no rating left'):
            R.load_ratings(path, k_core=k)
        return
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DataWarning)
        df, num_users, num_items, info = R.load_ratings(path, k_core=k)
    users = sorted({r[0] for r in kept})
    items = sorted({r[1] for r in kept})
    assert info['user_ids'].tolist() == users
    assert info['item_ids'].tolist() == items
    assert (num_users, num_items) == (len(users), len(items))
    expected = [[users.index(u) + 1, items.index(i) + 1, r, t]
                for u, i, r, t in kept]
    assert df.to_numpy().tolist() == expected


def test_stable_order_equals_lexsort():
    rng = np.random.default_rng(0)
    major = rng.integers(0, 5, 300)
    minor = rng.integers(-3, 4, 300)
    expected = np.lexsort((np.arange(300), minor, major))
    np.testing.assert_array_equal(stable_order(major, minor), expected)
    np.testing.assert_array_equal(
        stable_order(major, minor.astype(float)), expected)
    huge = major * 2 ** 60            # no combined key: two sorts
    np.testing.assert_array_equal(stable_order(huge, minor), expected)


def test_duplicates_only_within_user_and_timestamp(tmp_path):
    text = ('1\t2\t3\t100\n1\t3\t3\t100\n1\t2\t4\t101\n2\t2\t5\t100\n'
            '1\t2\t1\t100\n1\t3\t2\t100\n')
    with pytest.warns(DataWarning, match='2 duplicate .* rating 5'):
        df = R.read_ratings(write(tmp_path, text))
    assert df.attrs['duplicates'] == 2
    expected = df.duplicated(['user_id', 'item_id', 'timestamp'])
    np.testing.assert_array_equal(duplicated(df), expected.to_numpy())
