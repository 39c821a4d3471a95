"""Train, validation and test parts of each user's history, in time.

The chapter holds out each user's latest interaction for testing
(``split_seq_aware``, the ``last`` split). The paper and its peers use
two more protocols, chosen by ``--split``:

* ``last-valid``: the latest interaction is the test item and the one
  before it the validation item (RecBole's leave-one-out);
* ``fraction``: the paper's time split: the first 70% of each user's
  history trains, the next 10% validates, the last 20% tests;
* ``files``: train, (validation,) test files given by the user, as the
  authors' code reads them (``user item rating`` lines in time order) or
  with a fourth timestamp column; ids are tokens shared by the files.

Every part is a frame ``user_id, item_id, rating, timestamp`` (1-based
ids), sorted by user, then time (file order among ties). The input
sequence of a held-out part is the last ``L`` items before it
(:func:`last_items`).
"""
import pathlib

import numpy as np
import pandas as pd

from .data import NAMES, DataError, split_seq_aware

__all__ = ['SPLITS', 'last_items', 'read_split_files', 'split_fraction',
           'split_last']

SPLITS = ('last', 'last-valid', 'fraction', 'files')


def split_last(df, num_users, num_items, *, valid=False):
    """The chapter's split, and the second-to-last item for validation.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``train``, ``test`` (one row per user) and, with ``valid=True``,
        ``valid`` (one row per user with at least two training rows).
    """
    train, test = split_seq_aware(df, num_users, num_items)
    parts = {'train': train, 'test': test}
    if valid:
        counts = train.groupby('user_id').size()
        several = train.user_id.map(counts).to_numpy() > 1
        rest, parts['valid'] = split_seq_aware(train[several], num_users,
                                               num_items)
        parts['train'] = pd.concat([train[~several], rest]).sort_values(
            ['user_id', 'timestamp'], kind='stable')
    return parts


def split_fraction(df, *, fractions=(0.7, 0.1)):
    """The paper's time split of each user's history.

    A user with ``n`` interactions in time order (file order among ties)
    trains on positions ``p < b1`` and validates on ``b1 <= p < b2``,
    where ``b1 = max(1, round(0.7 n))`` and ``b2 = max(b1, round(0.8 n))``
    (halves rounded up); the rest tests. So 10 items give 7/1/2, 5 items
    4/0/1, 3 items 2/0/1, 1 item 1/0/0.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``train``, ``valid``, ``test``.
    """
    order = np.lexsort((np.arange(len(df)), df.timestamp.to_numpy(),
                        df.user_id.to_numpy()))
    df = df.iloc[order]
    users = df.user_id.to_numpy()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    pos = np.arange(len(users)) - np.repeat(starts, counts)
    n = np.repeat(counts, counts)
    b1 = np.maximum(1, np.floor(fractions[0] * n + 0.5))
    b2 = np.maximum(b1, np.floor((fractions[0] + fractions[1]) * n + 0.5))
    return {'train': df[pos < b1], 'valid': df[(pos >= b1) & (pos < b2)],
            'test': df[pos >= b2]}


def last_items(users, items, *, num_users, L, pad):
    """Each user's last ``L`` items, left-padded: the input of a held-out part.

    Parameters
    ----------
    users, items : (n,) int
        0-based, sorted by user, each user's in time order.
    num_users, L, pad : int

    Returns
    -------
    (num_users, L) int32
    """
    users = np.asarray(users, np.int64)
    out = np.full((num_users, L), pad, np.int32)
    if not len(users):
        return out
    ends = np.r_[np.flatnonzero(np.diff(users)) + 1, len(users)]
    counts = np.diff(np.r_[0, ends])
    from_end = np.repeat(ends, counts) - 1 - np.arange(len(users))
    keep = from_end < L
    out[users[keep], L - 1 - from_end[keep]] = np.asarray(items)[keep]
    return out


def _read_part(path):
    """One split file: 3 (``user item rating``) or 4 columns, tokens."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f'{path}: split file not found')
    try:
        raw = pd.read_csv(path, sep=None, header=None, dtype=str,
                          engine='python', keep_default_na=False,
                          skip_blank_lines=True, encoding='utf-8-sig')
    except (pd.errors.ParserError, pd.errors.EmptyDataError,
            UnicodeDecodeError, OSError) as err:
        raise DataError(f'{path}: unreadable ({str(err).splitlines()[0]}); '
                        'expected lines "user item rating [timestamp]"'
                        ) from None
    empty = (raw.isna() | (raw == '')).to_numpy().any(axis=1)
    if raw.shape[1] not in (3, 4) or empty.any():
        row = int(np.flatnonzero(empty)[0]) if empty.any() else 0
        raise DataError(f'{path}, line {row + 1}: expected 3 or 4 fields '
                        '(user item rating [timestamp])')
    if raw.shape[1] == 3:           # time order is line order
        raw[3] = np.arange(len(raw)).astype(str)
    stamps = pd.to_numeric(raw[3], errors='coerce')
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise DataError(f'{path}, line {row + 1}: timestamp is not a number')
    raw[3] = stamps
    return raw


def read_split_files(train_file, test_file, valid_file=None):
    """Predefined parts, with user and item ids mapped as shared tokens.

    Returns
    -------
    parts : dict of str to pandas.DataFrame
        ``train``, ``test`` and ``valid`` (or None), 1-based ids.
    num_users, num_items : int
    id_maps : dict
        ``user_ids``, ``item_ids``: the token of each 0-based id.
    """
    files = {'train': train_file, 'valid': valid_file, 'test': test_file}
    raws = {k: _read_part(v) for k, v in files.items() if v is not None}
    offset = 0                      # later files come later in time
    for name in ('train', 'valid', 'test'):
        if name in raws:
            raws[name][3] = raws[name][3] + offset
            offset = raws[name][3].max() + 1
    both = pd.concat(list(raws.values()), keys=list(raws))
    user_codes, user_ids = pd.factorize(both[0], sort=True)
    item_codes, item_ids = pd.factorize(both[1], sort=True)
    frame = pd.DataFrame({NAMES[0]: user_codes + 1, NAMES[1]: item_codes + 1,
                          NAMES[2]: pd.to_numeric(both[2], errors='coerce'),
                          NAMES[3]: both[3].to_numpy()}, index=both.index)
    parts = {name: frame.loc[name].sort_values(
        ['user_id', 'timestamp'], kind='stable').reset_index(drop=True)
        for name in raws}
    parts.setdefault('valid', None)
    return parts, len(user_ids), len(item_ids), {
        'user_ids': np.asarray(user_ids), 'item_ids': np.asarray(item_ids)}
