"""A run's data, from its :class:`~caser_gluon.config.DataConfig`.

The chapter's data pipeline in one call: read the ratings (ML-100K, or any
ratings file), hold out each user's latest interaction, turn both parts
into implicit feedback, and cut the training histories into ``SeqDataset``
windows. Each step is in :mod:`caser_gluon.data`; this module only chains
them and records what the data was and how long each step took.
"""
import time

from . import data as data_lib
from .interactions import ItemSets

__all__ = ['load_data']


def load_data(config, *, L, seed=None):
    """ML-100K or ``config.ratings``, split, as the chapter's ``SeqDataset``.

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
        ``train_seq_data`` (SeqDataset), ``test_input`` (each user's
        held-out items) and ``candidates`` (training items), both ItemSets,
        ``num_users``, ``num_items``, ``data_info`` (what the data was:
        file, checksum, rows, seconds per step) and ``id_maps`` (the
        original ids of a ratings file's users and items, else None).
    """
    start = time.perf_counter()
    info, id_maps = {'name': 'ml-100k'}, None
    if config.ratings is not None:
        df, num_users, num_items, info = data_lib.load_ratings(
            config.ratings, min_rating=config.min_rating,
            k_core=config.k_core)
        id_maps = {'user_ids': info.pop('user_ids'),
                   'item_ids': info.pop('item_ids')}
    else:
        if config.min_rating is not None or config.k_core:
            raise ValueError('--min-rating and --k-core need --ratings')
        df, num_users, num_items = data_lib.read_ml100k(config.data_dir)
    train_df, test_df = data_lib.split_seq_aware(df, num_users, num_items)
    del df
    sets = {}
    for name, part in [('train', train_df), ('test', test_df)]:
        users, items, _ = data_lib.load_implicit(part, num_users, num_items)
        sets[name] = (users, items)
    info['load_seconds'] = time.perf_counter() - start
    start = time.perf_counter()
    candidates = ItemSets.from_pairs(*sets['train'], num_users=num_users,
                                     num_items=num_items)
    dataset = data_lib.SeqDataset(*sets['train'], L, num_users, num_items,
                                  candidates, targets=config.targets,
                                  seed=seed)
    info['windows_seconds'] = time.perf_counter() - start
    info['num_windows'] = len(dataset)
    test_input = ItemSets.from_pairs(*sets['test'], num_users=num_users,
                                     num_items=num_items)
    return {'train_seq_data': dataset, 'test_input': test_input,
            'candidates': candidates, 'num_users': num_users,
            'num_items': num_items, 'data_info': info, 'id_maps': id_maps}
