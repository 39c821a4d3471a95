"""Shared fixtures: a replayable seed and ML-100K, read once per session."""
import os

import mxnet as mx
import numpy as np
import pytest
from helpers import write_ratings

from caser_gluon import data as data_lib

os.environ.setdefault('MPLBACKEND', 'Agg')


@pytest.fixture
def ratings(tmp_path):
    """A tiny ratings file (``helpers.write_ratings``: 24 users, 30 items).
    """
    path = tmp_path / 'ratings.tsv'
    write_ratings(path)
    return path


@pytest.fixture
def seed(request):
    """Seed NumPy and MXNet; ``CASER_TEST_SEED=N pytest`` replays a run."""
    value = int(os.environ.get('CASER_TEST_SEED', '0'))
    np.random.seed(value)
    mx.random.seed(value)
    return value


@pytest.fixture(scope='session')
def ml100k():
    """``(df, num_users, num_items)`` of ML-100K (fetched if needed)."""
    return data_lib.read_ml100k()


@pytest.fixture(scope='session')
def ml100k_split(ml100k):
    """The sequence-aware split and implicit feedback of ML-100K."""
    df, num_users, num_items = ml100k
    train_df, test_df = data_lib.split_seq_aware(df, num_users, num_items)
    users, items, candidates = data_lib.load_implicit(
        train_df, num_users, num_items)
    _, _, test_input = data_lib.load_implicit(test_df, num_users, num_items)
    return {'train_df': train_df, 'test_df': test_df, 'users': users,
            'items': items, 'candidates': candidates,
            'test_input': test_input, 'num_users': num_users,
            'num_items': num_items}
