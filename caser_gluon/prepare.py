"""A run's data, from its :class:`~caser_gluon.config.DataConfig`.

The chapter's data pipeline in one call: read the ratings (ML-100K, any
ratings file, or predefined split files), hold out each user's latest
interaction (or the paper's last 20%, :mod:`caser_gluon.splits`), turn the
parts into implicit feedback, and cut the training histories into
``SeqDataset`` windows. Each step lives in :mod:`caser_gluon.data` and
:mod:`caser_gluon.splits`; this module chains them and records what the
data was and how long each step took.
"""
import time

import numpy as np
import pandas as pd

from . import data as data_lib
from .interactions import ItemSets
from .splits import last_items, read_split_files, split_fraction, split_last

__all__ = ['load_data', 'read_parts']


def read_parts(config):
    """The split parts of the configured data (see :mod:`splits`).

    Returns
    -------
    parts : dict of str to DataFrame or None
        ``train``, ``valid``, ``test``.
    num_users, num_items : int
    info : dict
        What the data was.
    id_maps : dict or None
        The original ids of a ratings file's (or split files') users and
        items.
    """
    if config.split == 'files':
        if not (config.train_file and config.test_file):
            raise ValueError('--split files needs --train-file and '
                             '--test-file')
        parts, n_users, n_items, id_maps = read_split_files(
            config.train_file, config.test_file, config.valid_file)
        return parts, n_users, n_items, {'name': 'split files'}, id_maps
    id_maps, info = None, {'name': 'ml-100k'}
    if config.ratings is not None:
        df, n_users, n_items, info = data_lib.load_ratings(
            config.ratings, min_rating=config.min_rating,
            k_core=config.k_core)
        id_maps = {'user_ids': info.pop('user_ids'),
                   'item_ids': info.pop('item_ids')}
    else:
        if config.min_rating is not None or config.k_core:
            raise ValueError('--min-rating and --k-core need --ratings')
        df, n_users, n_items = data_lib.read_ml100k(config.data_dir)
    if config.split == 'fraction':
        parts = split_fraction(df)
    else:
        parts = split_last(df, n_users, n_items,
                           valid=config.split == 'last-valid')
    parts.setdefault('valid', None)
    return parts, n_users, n_items, info, id_maps


def _pairs(frame):
    """0-based ``(users, items)`` of a part, in its (user, time) order."""
    return (frame.user_id.to_numpy(np.int64) - 1,
            frame.item_id.to_numpy(np.int64) - 1)


def load_data(config, *, L, seed=None):
    """The configured ratings, split, as the chapter's ``SeqDataset``.

    Parameters
    ----------
    config : DataConfig
    L : int
        Length of the input sequence.
    seed : int, optional
        Seed of ``SeqDataset``'s own negative sampler (the d2l loop's).

    Returns
    -------
    dict
        ``train_seq_data`` (SeqDataset); ``test_input`` (each user's
        held-out items), ``test_seq`` ((num_users, L), the items before
        them) and ``test_excluded`` (items not ranked: training and
        validation items); ``valid_input`` and ``valid_seq`` (None without
        a validation part; training items are not ranked); ``candidates``
        (training items); item sets are ItemSets. Also ``num_users``,
        ``num_items``, ``data_info`` (file, checksum, seconds per step) and
        ``id_maps`` (original ids, or None).
    """
    start = time.perf_counter()
    parts, n_users, n_items, info, id_maps = read_parts(config)
    shape = {'num_users': n_users, 'num_items': n_items}
    info['load_seconds'] = time.perf_counter() - start
    start = time.perf_counter()
    train = _pairs(parts['train'])
    candidates = ItemSets.from_pairs(*train, **shape)
    dataset = data_lib.SeqDataset(*train, L, n_users, n_items, candidates,
                                  targets=config.targets, seed=seed,
                                  windows=config.windows)
    info['windows_seconds'] = time.perf_counter() - start
    info['num_windows'] = len(dataset)
    out = {'train_seq_data': dataset, 'candidates': candidates,
           'test_input': ItemSets.from_pairs(*_pairs(parts['test']), **shape),
           'test_seq': dataset.test_seq, 'test_excluded': candidates,
           'valid_input': None, 'valid_seq': None, 'data_info': info,
           'id_maps': id_maps, **shape}
    if parts['valid'] is not None and len(parts['valid']):
        seen = pd.concat([parts['train'], parts['valid']])
        order = np.lexsort((np.arange(len(seen)), seen.timestamp.to_numpy(),
                            seen.user_id.to_numpy()))
        users, items = _pairs(seen.iloc[order])
        out.update(valid_input=ItemSets.from_pairs(*_pairs(parts['valid']),
                                                   **shape),
                   valid_seq=dataset.test_seq,
                   test_seq=last_items(users, items, num_users=n_users, L=L,
                                       pad=n_items),
                   test_excluded=ItemSets.from_pairs(users, items, **shape))
    return out
