"""Tests of the paper's protocol: splits, split files, early stopping."""
import json

import mxnet as mx
import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, write_ratings

from caser_gluon.config import DataConfig
from caser_gluon.data import DataError
from caser_gluon.prepare import load_data
from caser_gluon.splits import (
    last_items,
    read_split_files,
    split_fraction,
    split_last,
)


def frame(histories):
    """Rows of ``{user: [items, oldest first]}``, timestamps 10, 20, ..."""
    rows = [(u, i, 5, 10 * (t + 1)) for u, items in histories.items()
            for t, i in enumerate(items)]
    return pd.DataFrame(rows, columns=['user_id', 'item_id', 'rating',
                                       'timestamp'])


@pytest.mark.parametrize('n, counts', [(10, (7, 1, 2)), (20, (14, 2, 4)),
                                       (5, (4, 0, 1)), (3, (2, 0, 1)),
                                       (2, (1, 1, 0)), (1, (1, 0, 0))])
def test_fraction_split_counts_by_hand(n, counts):
    parts = split_fraction(frame({1: list(range(1, n + 1))}))
    got = tuple(len(parts[k]) for k in ('train', 'valid', 'test'))
    assert got == counts
    # in time: train items come first, then validation, then test
    order = pd.concat([parts['train'], parts['valid'], parts['test']])
    assert order.item_id.tolist() == list(range(1, n + 1))


def test_fraction_split_keeps_time_order_of_shuffled_rows():
    rng = np.random.default_rng(0)
    df = frame({1: list(range(1, 11)), 2: list(range(11, 16))})
    df = df.iloc[rng.permutation(len(df))]
    parts = split_fraction(df)
    assert parts['test'].item_id.tolist() == [9, 10, 15]
    assert parts['valid'].item_id.tolist() == [8]


def test_last_valid_split_holds_out_the_two_latest():
    df = frame({1: [4, 5, 6, 7], 2: [1, 8, 9], 3: [2, 3]})
    parts = split_last(df, 3, 9, valid=True)
    assert parts['test'].item_id.tolist() == [7, 9, 3]
    assert parts['valid'].item_id.tolist() == [6, 8]
    # a user needs two training items to give one to validation
    assert parts['train'].item_id.tolist() == [4, 5, 1, 2]


def test_last_items_left_padded():
    users = np.array([0, 0, 0, 2])
    items = np.array([5, 6, 7, 1])
    got = last_items(users, items, num_users=3, L=2, pad=9)
    assert got.tolist() == [[6, 7], [9, 9], [9, 1]]


def test_split_files_in_the_authors_format_with_string_ids(tmp_path):
    (tmp_path / 'train.txt').write_text(
        'alice B00X 5\nalice A1 3\nbob A1 4\nbob C7 2\n')
    (tmp_path / 'test.txt').write_text('alice C7 1\nbob B00X 5\n')
    parts, n_users, n_items, maps = read_split_files(
        tmp_path / 'train.txt', tmp_path / 'test.txt')
    assert (n_users, n_items) == (2, 3)
    assert maps['user_ids'].tolist() == ['alice', 'bob']
    assert maps['item_ids'].tolist() == ['A1', 'B00X', 'C7']
    # line order is time order: alice trains on B00X, then A1
    train = parts['train']
    assert train[train.user_id == 1].item_id.tolist() == [2, 1]
    assert parts['test'].item_id.tolist() == [3, 2]
    assert parts['valid'] is None
    data = load_data(DataConfig(split='files',
                                train_file=str(tmp_path / 'train.txt'),
                                test_file=str(tmp_path / 'test.txt')),
                     L=2, seed=0)
    assert data['test_input'].row(0).tolist() == [2]       # C7, 0-based
    assert data['test_seq'].tolist() == [[1, 0], [0, 2]]   # last 2 items


def test_split_file_errors_name_the_file_and_line(tmp_path):
    (tmp_path / 'train.txt').write_text('alice A1 3\nbob\n')
    (tmp_path / 'test.txt').write_text('alice C7 1\n')
    with pytest.raises(DataError, match=r'train.txt'):
        read_split_files(tmp_path / 'train.txt', tmp_path / 'test.txt')
    with pytest.raises(DataError, match='not found'):
        read_split_files(tmp_path / 'nope.txt', tmp_path / 'test.txt')


def test_validation_sequences_and_test_exclusions(tmp_path):
    write_ratings(tmp_path / 'r.tsv', num_users=6, num_items=20,
                  per_user=8)
    data = load_data(DataConfig(ratings=str(tmp_path / 'r.tsv'),
                                split='last-valid'), L=3, seed=0)
    dataset = data['train_seq_data']
    for u in range(6):
        valid = data['valid_input'].row(u).tolist()
        test = data['test_input'].row(u).tolist()
        train = data['candidates'].row(u)
        # the test context ends with the validation item; the validation
        # context is the last training items; the test ranking excludes
        # training and validation items
        assert data['test_seq'][u, -1] == valid[0]
        assert data['valid_seq'][u].tolist() == dataset.test_seq[u].tolist()
        excluded = set(data['test_excluded'].row(u).tolist())
        assert excluded == set(train.tolist()) | set(valid)
        assert test[0] not in excluded


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    write_ratings(tmp_path / 'r.tsv', num_users=40, num_items=30,
                  per_user=12)
    out = tmp_path / 'run'
    assert run_cli(['train', '--ratings', str(tmp_path / 'r.tsv'),
                    '--split', 'last-valid', '--patience', '2',
                    '--epochs', '6', '--batch-size', '64', '--L', '3',
                    '--lr', '0.05', '--quiet', '--out', str(out)]) == 0
    history = json.loads((out / 'metrics.json').read_text())
    result = json.loads((out / 'result.json').read_text())
    scores = [r['valid_ndcg@10'] for r in history]
    best = int(np.argmax(scores)) + 1        # first epoch among ties
    assert result['epoch'] == best
    # patience: stopped 2 epochs after the best, or at the last epoch
    assert history[-1]['epoch'] == min(best + 2, 6)
    # the saved parameters are the best epoch's
    saved = mx.nd.load(str(out / 'caser.params'))
    kept = mx.nd.load(str(out / 'best.params'))
    assert saved.keys() == kept.keys()
    for key in saved:
        np.testing.assert_array_equal(saved[key].asnumpy(),
                                      kept[key].asnumpy())
