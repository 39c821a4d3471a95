"""Data for the chapter's Caser: MovieLens-100K and the sequential dataset.

This module implements the data sections of the D2L chapter "Sequence-aware
Recommender Systems": reading ML-100K, the sequence-aware split (each user's
latest interaction is held out for testing), implicit feedback, and
``SeqDataset``, which turns each user's history into sliding windows of ``L``
items followed by the item to predict.

The chapter reads ML-100K with ``d2l.read_data_ml100k``, which downloads it
from GroupLens. Where that is impossible (no network), :func:`read_ml100k`
takes the copy of ML-100K shipped inside the ``recbole==1.2.1`` wheel on PyPI
and writes it to a local cache in ``u.data`` form. MovieLens data is never
part of this repository: its licence forbids redistribution.
"""
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import warnings
import zipfile

import numpy as np
import pandas as pd
from mxnet import gluon

__all__ = [
    'ML100K_SHAPE',
    'DataError',
    'DataWarning',
    'SeqDataset',
    'default_cache_dir',
    'fetch_ml100k',
    'load_implicit',
    'load_ratings',
    'read_ml100k',
    'read_ratings',
    'read_titles',
    'sample_negatives',
    'seen_mask',
    'split_seq_aware',
]

ML100K_SHAPE = {'rows': 100_000, 'users': 943, 'items': 1_682}
NAMES = ['user_id', 'item_id', 'rating', 'timestamp']
RECBOLE_WHEEL = 'recbole==1.2.1'
RECBOLE_DIR = 'recbole/dataset_example/ml-100k/'


class DataError(ValueError):
    """Raised when a ratings file or an argument cannot be used as data."""


class DataWarning(UserWarning):
    """Data that is used, but that a reader should know about."""


# ---------------------------------------------------------------------------
# Reading MovieLens-100K
# ---------------------------------------------------------------------------

def default_cache_dir():
    """Folder where the fetched ML-100K is kept (``u.data``, ``u.item``).

    ``$CASER_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/caser-gluon/ml-100k``
    (``~/.cache/caser-gluon/ml-100k``).
    """
    if os.environ.get('CASER_DATA_DIR'):
        return pathlib.Path(os.environ['CASER_DATA_DIR'])
    cache = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
    return pathlib.Path(cache) / 'caser-gluon' / 'ml-100k'


def _candidate_dirs(data_dir):
    """Folders searched for an existing ``u.data``, in order."""
    dirs = []
    if data_dir is not None:
        dirs.append(pathlib.Path(data_dir))
    if os.environ.get('CASER_DATA_DIR'):
        dirs.append(pathlib.Path(os.environ['CASER_DATA_DIR']))
    dirs.append(pathlib.Path('..') / 'data' / 'ml-100k')  # d2l's cache
    dirs.append(default_cache_dir())
    return dirs


def _atomic_write(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.')
    with os.fdopen(fd, 'w', encoding='latin-1') as f:
        f.write(text)
    os.replace(tmp, path)


def _recbole_to_ml100k(wheel, out_dir):
    """Convert the ML-100K copy inside a recbole wheel to ``u.data``/``u.item``.

    The ``.inter`` file holds the ratings in ``u.data``'s order, under a
    one-line header; ``.item`` holds the titles (without the year suffix).
    """
    with zipfile.ZipFile(wheel) as z:
        inter = z.read(RECBOLE_DIR + 'ml-100k.inter').decode('latin-1')
        item = z.read(RECBOLE_DIR + 'ml-100k.item').decode('latin-1')
    lines = inter.splitlines()[1:]
    _atomic_write(out_dir / 'u.data', '\n'.join(lines) + '\n')
    rows = []
    for line in item.splitlines()[1:]:
        fields = line.split('\t')
        title = f'{fields[1]} ({fields[2]})' if fields[2] else fields[1]
        rows.append(f'{fields[0]}|{title}|{fields[3]}')
    _atomic_write(out_dir / 'u.item', '\n'.join(rows) + '\n')
    digest = hashlib.sha256((out_dir / 'u.data').read_bytes()).hexdigest()
    _atomic_write(out_dir / 'u.data.sha256', digest + '\n')


def fetch_ml100k(out_dir=None, *, quiet=False):
    """Fetch ML-100K from PyPI's ``recbole==1.2.1`` wheel into ``out_dir``.

    Parameters
    ----------
    out_dir : path-like, optional
        Destination folder (default :func:`default_cache_dir`).
    quiet : bool
        Silence pip.

    Returns
    -------
    pathlib.Path
        The folder, now holding ``u.data`` and ``u.item``.
    """
    out_dir = pathlib.Path(out_dir or default_cache_dir())
    if (out_dir / 'u.data').exists():
        return out_dir
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps',
               '--disable-pip-version-check', '-d', tmp, RECBOLE_WHEEL]
        if quiet:
            cmd.append('-q')
        if not quiet:
            print(f'Fetching ML-100K from the {RECBOLE_WHEEL} wheel on PyPI')
        done = subprocess.run(cmd, check=False, capture_output=quiet,
                              text=True)
        wheels = list(pathlib.Path(tmp).glob('recbole-*.whl'))
        if done.returncode != 0 or not wheels:
            raise DataError(f'could not download {RECBOLE_WHEEL} with pip '
                            f'(exit code {done.returncode}); put u.data in '
                            f'{out_dir} or pass --data-dir')
        _recbole_to_ml100k(wheels[0], out_dir)
    return out_dir


def _sniff_sep(path):
    """The separator of a ratings file's first line: ``::``, tab or comma."""
    with open(path, encoding='latin-1') as f:
        line = f.readline()
    for sep in ['::', '\t', ',']:
        if sep in line:
            return sep
    raise DataError(f'{path}, line 1: no separator found (tab, comma or '
                    f'"::"): {line.strip()!r}')


def read_ratings(path, *, sep='\t', min_rating=1, max_rating=5,
                 integer_ratings=True):
    """Read a ``user item rating timestamp`` file, checking every line.

    Parameters
    ----------
    path : path-like
        The ratings file (ML-100K's ``u.data`` format by default). A first
        line that is not numeric is taken as a header and skipped.
    sep : str
        Field separator: ``'\\t'``, ``','``, ``'::'`` or ``'auto'``.
    min_rating, max_rating : float or None
        Allowed rating range (``None``: no bound).
    integer_ratings : bool
        Require integer ratings (ML-100K); ``False`` accepts e.g. ``4.5``.

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id, item_id, rating, timestamp`` (int64, the rating
        float64 when ``integer_ratings=False``), file order.
        ``df.attrs['duplicates']`` counts duplicate (user, item, timestamp)
        rows, which are kept and reported with a ``DataWarning``.

    Raises
    ------
    DataError
        Naming the file and the first bad line: missing or empty file,
        wrong number of fields, a non-integer field, a rating out of range.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f'{path}: ratings file not found')
    if path.stat().st_size == 0:
        raise DataError(f'{path}: the ratings file is empty')
    if sep == 'auto':
        sep = _sniff_sep(path)
    try:
        raw = pd.read_csv(path, sep=sep, header=None, dtype=str,
                          engine='c' if len(sep) == 1 else 'python',
                          keep_default_na=False, encoding='latin-1')
    except pd.errors.ParserError as err:
        raise DataError(f'{path}: {err} (expected 4 fields: user item '
                        f'rating timestamp, separated by {sep!r})') from None
    if raw.shape[1] != 4:
        raise DataError(f'{path}: expected 4 fields (user item rating '
                        f'timestamp) separated by {sep!r}, found '
                        f'{raw.shape[1]} on line 1')
    first = 1
    if pd.to_numeric(raw.iloc[0], errors='coerce').isna().all():
        raw, first = raw.iloc[1:].reset_index(drop=True), 2   # a header
    if raw.empty:
        raise DataError(f'{path}: the ratings file has no rating')
    values = raw.apply(pd.to_numeric, errors='coerce')
    bad = values.isna() | (raw == '')
    whole = values.notna() & (values == values.round())
    bad |= ~whole if integer_ratings else ~whole & (values.columns != 2)
    if bad.to_numpy().any():
        row = int(np.flatnonzero(bad.to_numpy().any(axis=1))[0])
        col = int(np.flatnonzero(bad.iloc[row].to_numpy())[0])
        got = sep.join(raw.iloc[row].tolist())
        what = 'a number' if col == 2 and not integer_ratings else \
            'an integer'
        raise DataError(f'{path}, line {row + first}: {NAMES[col]} is not '
                        f'{what} (line reads {got!r}; expected user item '
                        f'rating timestamp separated by {sep!r})')
    df = values.astype(np.int64) if integer_ratings else \
        values.astype({0: np.int64, 1: np.int64, 2: float, 3: np.int64})
    df.columns = NAMES
    low = -np.inf if min_rating is None else min_rating
    high = np.inf if max_rating is None else max_rating
    out = (df.rating < low) | (df.rating > high)
    if out.any():
        row = int(np.flatnonzero(out.to_numpy())[0])
        raise DataError(f'{path}, line {row + first}: rating '
                        f'{df.rating[row]} outside {min_rating}..'
                        f'{max_rating}')
    neg = (df.user_id < 1) | (df.item_id < 1)
    if neg.any():
        row = int(np.flatnonzero(neg.to_numpy())[0])
        raise DataError(f'{path}, line {row + first}: user and item ids '
                        f'must be >= 1')
    dup = df.duplicated(['user_id', 'item_id', 'timestamp'], keep='first')
    df.attrs['duplicates'] = int(dup.sum())
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        warnings.warn(f'{path}: {int(dup.sum())} duplicate (user, item, '
                      f'timestamp) rows, kept; the first is line '
                      f'{row + first}', DataWarning, stacklevel=2)
    return df


def load_ratings(path, *, sep='auto', min_rating=None, k_core=0):
    """Any ``user item rating timestamp`` file, ready for the chapter's path.

    Reads the file (tab, comma or ``::`` separated, e.g. MovieLens 1M's
    ``ratings.dat``), keeps ratings ``>= min_rating``, applies a ``k``-core
    filter (users and items with fewer than ``k_core`` interactions are
    dropped until none is left) and remaps ids to ``1..num_users`` and
    ``1..num_items`` in the order of the original ids.

    Returns
    -------
    df : pandas.DataFrame
        Remapped ``user_id, item_id, rating, timestamp``, file order.
    num_users, num_items : int
    info : dict
        ``path``, ``sha256`` of the file, ``rows_read``, ``rows_kept``,
        ``user_ids`` and ``item_ids`` (the original id of each new id - 1).
    """
    path = pathlib.Path(path)
    df = read_ratings(path, sep=sep, min_rating=None, max_rating=None,
                      integer_ratings=False)
    rows_read = len(df)
    if min_rating is not None:
        df = df[df.rating >= min_rating]
    while k_core > 1 and len(df):
        users = df.user_id.map(df.user_id.value_counts())
        items = df.item_id.map(df.item_id.value_counts())
        keep = (users >= k_core) & (items >= k_core)
        if keep.all():
            break
        df = df[keep]
    if not len(df):
        raise DataError(f'{path}: no rating left after min_rating='
                        f'{min_rating} and k_core={k_core}')
    user_codes, user_ids = pd.factorize(df.user_id, sort=True)
    item_codes, item_ids = pd.factorize(df.item_id, sort=True)
    out = df.assign(user_id=user_codes + 1, item_id=item_codes + 1)
    out = out.reset_index(drop=True)
    info = {'path': str(path),
            'sha256': hashlib.sha256(path.read_bytes()).hexdigest(),
            'rows_read': rows_read, 'rows_kept': len(out),
            'user_ids': np.asarray(user_ids), 'item_ids': np.asarray(item_ids)}
    return out, len(user_ids), len(item_ids), info


def read_ml100k(data_dir=None, *, fetch=True):
    """Read ML-100K as ``d2l.read_data_ml100k`` does, offline if need be.

    Sources, in order: ``u.data`` in ``data_dir``, in ``$CASER_DATA_DIR``,
    in d2l's cache ``../data/ml-100k/`` or in :func:`default_cache_dir`;
    then the copy inside the ``recbole`` wheel (:func:`fetch_ml100k`).

    Returns
    -------
    df : pandas.DataFrame
        ``user_id, item_id, rating, timestamp``, 100,000 rows, 1-based ids.
    num_users : int
        943.
    num_items : int
        1,682.
    """
    for folder in _candidate_dirs(data_dir):
        if (folder / 'u.data').is_file():
            path = folder / 'u.data'
            break
    else:
        if not fetch:
            raise DataError('u.data not found in ' + ', '.join(
                str(d) for d in _candidate_dirs(data_dir)))
        path = fetch_ml100k(data_dir) / 'u.data'
    _check_checksum(path)
    df = read_ratings(path)
    num_users, num_items = df.user_id.nunique(), df.item_id.nunique()
    got = {'rows': len(df), 'users': num_users, 'items': num_items}
    if got != ML100K_SHAPE:
        raise DataError(f'{path}: not ML-100K: found {got}, expected '
                        f'{ML100K_SHAPE}')
    if df.user_id.max() != num_users or df.item_id.max() != num_items:
        raise DataError(f'{path}: ids are not 1..{num_users} and '
                        f'1..{num_items}')
    return df, num_users, num_items


def _check_checksum(path):
    """Compare ``path`` with the checksum written when it was fetched."""
    record = path.with_name(path.name + '.sha256')
    if not record.is_file():
        return
    expected = record.read_text().split()[0]
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != expected:
        raise DataError(f'{path}: checksum {got[:12]}... differs from the '
                        f'one recorded when it was fetched ({expected[:12]}'
                        f'...); delete {path.parent} and run make data')


def read_titles(data_dir=None):
    """Movie titles of ML-100K, indexed by 0-based item id.

    Returns
    -------
    numpy.ndarray of str, shape (num_items,)
    """
    for folder in _candidate_dirs(data_dir):
        if (folder / 'u.item').is_file():
            path = folder / 'u.item'
            break
    else:
        path = fetch_ml100k(data_dir) / 'u.item'
    items = pd.read_csv(path, sep='|', header=None, encoding='latin-1',
                        usecols=[0, 1], names=['item_id', 'title'])
    titles = np.full(items.item_id.max(), '', dtype=object)
    titles[items.item_id.to_numpy() - 1] = items.title.to_numpy()
    return titles


# ---------------------------------------------------------------------------
# The sequence-aware split and implicit feedback
# ---------------------------------------------------------------------------

def split_seq_aware(df, num_users, num_items):
    """Hold out each user's latest interaction, as the chapter does.

    Same rows as ``d2l.split_data_ml100k(df, ..., 'seq-aware')``, vectorised:
    the test row of a user is the one with the latest timestamp (the first
    in file order among ties); training rows are sorted by user, then by
    timestamp (file order among ties). d2l drops every training row equal to
    a test row; here only the test row itself leaves training, which is the
    same on ML-100K (it has no duplicate rows).

    Returns
    -------
    train_df, test_df : pandas.DataFrame
        Columns as ``df``; ``test_df`` has one row per user, sorted by user.
    """
    if len(df) == 0:
        raise DataError('cannot split empty data')
    rows = df.assign(_row=np.arange(len(df)))
    latest = rows.sort_values(['user_id', 'timestamp', '_row'],
                              ascending=[True, False, True], kind='stable')
    test_rows = latest.drop_duplicates('user_id')['_row'].to_numpy()
    test_df = df.iloc[test_rows]
    single = int((latest.user_id.value_counts() == 1).sum())
    if single:
        warnings.warn(f'{single} users have a single interaction: it is '
                      'their test item, and they give no training window',
                      DataWarning, stacklevel=2)
    keep = np.ones(len(df), dtype=bool)
    keep[test_rows] = False
    train_df = df[keep].sort_values(['user_id', 'timestamp'], kind='stable')
    return train_df, test_df


def load_implicit(df, num_users, num_items):
    """Turn 1-based rows into 0-based implicit feedback.

    Like ``d2l.load_data_ml100k(df, ..., feedback='implicit')``.

    Returns
    -------
    users, items : numpy.ndarray of int64, shape (n,)
        0-based ids in ``df``'s row order.
    candidates : dict of int to list of int
        Each user's items, in row order (the user's interacted items).
    """
    users = df.iloc[:, 0].to_numpy(np.int64) - 1
    items = df.iloc[:, 1].to_numpy(np.int64) - 1
    _check_ids(users, num_users, 'user')
    _check_ids(items, num_items, 'item')
    order = np.argsort(users, kind='stable')
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    groups = np.split(items[order], bounds)
    keys = users[order][np.r_[0, bounds]] if len(users) else []
    candidates = {int(u): g.tolist() for u, g in zip(keys, groups)}
    return users, items, candidates


def _check_ids(ids, count, what):
    """Raise :class:`DataError` if ids fall outside ``0..count-1``."""
    bad = (ids < 0) | (ids >= count)
    if bad.any():
        raise DataError(f'unknown {what} id {int(ids[bad][0]) + 1} '
                        f'(1-based): valid {what} ids are 1..{count}')


# ---------------------------------------------------------------------------
# Negative sampling
# ---------------------------------------------------------------------------

def sample_negatives(users, seen, rng, *, max_rounds=1000):
    """Draw one item per user that the user has not interacted with.

    Rejection sampling against a boolean user-item mask: uniform draws, and
    the draws that hit a seen item are drawn again. Each round is vectorised
    and the expected number of rounds is small unless a user has seen
    almost every item.

    Parameters
    ----------
    users : numpy.ndarray of int, shape (n,)
    seen : numpy.ndarray of bool, shape (num_users, num_items)
        ``seen[u, i]`` is True when item ``i`` is one of user ``u``'s
        training items.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
    """
    num_items = seen.shape[1]
    neg = rng.integers(0, num_items, size=len(users))
    redo = np.flatnonzero(seen[users, neg])
    for _ in range(max_rounds):
        if not len(redo):
            return neg
        neg[redo] = rng.integers(0, num_items, size=len(redo))
        redo = redo[seen[users[redo], neg[redo]]]
    raise RuntimeError('negative sampling did not converge')


# ---------------------------------------------------------------------------
# The sequential dataset
# ---------------------------------------------------------------------------

class SeqDataset(gluon.data.Dataset):
    """Sliding windows over each user's history, as in the chapter.

    For a user whose training history is ``h`` (``c`` items in time order),
    each window is ``L + 1`` consecutive items: the first ``L`` are the
    input sequence and the last is the target. Windows slide by one item,
    from the latest back to the earliest, so a user gives ``c - L``
    windows when ``c >= L + 1``. A shorter history (``1 <= c <= L``) gives
    one window, left-padded with the padding id ``num_items``: the input is
    ``L + 1 - c`` padding ids then ``h[:-1]``, and the target ``h[-1]``.
    ``Caser`` keeps an embedding row for this padding id.

    Worked example (the chapter's figure): a user with 9 items ``0..8``,
    the latest, ``8``, held out for testing; the 8 training items with
    ``L = 5`` give 3 windows::

        seq = [2 3 4 5 6]  target = 7
        seq = [1 2 3 4 5]  target = 6
        seq = [0 1 2 3 4]  target = 5

    and the test sequence (the input used to predict the held-out item) is
    the last ``L`` training items ``[3 4 5 6 7]``.

    Parameters
    ----------
    user_ids, item_ids : array-like of int, shape (n,)
        0-based training interactions, each user's in time order.
    L : int
        Length of the input sequence.
    num_users, num_items : int
    candidates : dict of int to list of int
        Each user's training items; negatives are drawn outside them.
    targets : int
        ``T``, the number of next items each window predicts (the paper's
        "skip" behaviour). ``T = 1`` is the chapter's setting; with ``T >
        1`` windows have ``L + T`` items and a user gives ``c - L - T + 1``
        of them (users with fewer than ``T`` items give none, with a
        warning).
    seed : int, optional
        Seed of the negative sampler.

    Attributes
    ----------
    seq_users : numpy.ndarray of int32, shape (ns,)
    seq_items : numpy.ndarray of int32, shape (ns, L)
    seq_tgt : numpy.ndarray of int32, shape (ns, T)
    test_seq : numpy.ndarray of int32, shape (num_users, L)
        Each user's last ``L`` training items (left-padded).
    seen : numpy.ndarray of bool, shape (num_users, num_items)
    num_padded_users : int
        Users whose history is shorter than ``L + 1`` (a ``DataWarning``
        says so when there are any).
    """

    def __init__(self, user_ids, item_ids, L, num_users, num_items,
                 candidates, *, targets=1, seed=None):
        L = _check_positive_int(L, 'L')
        self.T = _check_positive_int(targets, 'targets')
        users = np.asarray(user_ids, dtype=np.int64).ravel()
        items = np.asarray(item_ids, dtype=np.int64).ravel()
        if len(users) != len(items):
            raise DataError(f'user_ids has {len(users)} entries but '
                            f'item_ids has {len(items)}')
        if not len(users):
            raise DataError('SeqDataset needs at least one interaction')
        _check_ids(users, num_users, 'user')
        _check_ids(items, num_items, 'item')
        self.L, self.num_users, self.num_items = L, num_users, num_items
        self.pad = num_items
        self.cand = candidates
        self.seen = seen_mask(candidates, num_users, num_items)
        full = np.flatnonzero(self.seen.all(axis=1))
        if len(full):
            raise DataError(f'user {int(full[0]) + 1} (1-based) has seen '
                            'every item: no negative can be drawn')
        self._build(users, items)
        self.rng = np.random.default_rng(seed)

    def _build(self, users, items):
        """Vectorised windows: pad each history on the left, then index."""
        L, T = self.L, self.T
        W = L + T                       # window: L inputs, then T targets
        order = np.argsort(users, kind='stable')
        users, items = users[order], items[order]
        uniq, starts, counts = np.unique(users, return_index=True,
                                         return_counts=True)
        too_short = counts < T
        if too_short.any():
            warnings.warn(f'T={T}: {int(too_short.sum())} users have fewer '
                          f'than T training items and give no window',
                          DataWarning, stacklevel=3)
        # each user's block in the padded array: P padding ids, then h
        P = W - 1
        pstarts = starts + P * np.arange(len(uniq))
        padded = np.full(len(items) + P * len(uniq), self.pad, np.int64)
        padded[np.arange(len(items)) + np.repeat(pstarts + P - starts,
                                                 counts)] = items
        block_ends = pstarts + P + counts
        n_win = np.where(too_short, 0, np.maximum(counts - W + 1, 1))
        self.num_padded_users = int(((counts < W) & ~too_short).sum())
        if self.num_padded_users:
            warnings.warn(f'L={L}: {self.num_padded_users} users have fewer '
                          f'than L + T = {W} training items (shortest: '
                          f'{counts.min()}); their single window is '
                          f'left-padded with id {self.pad}',
                          DataWarning, stacklevel=3)
        self.ns = int(n_win.sum())
        if not self.ns:
            raise DataError(f'no training window: every history is shorter '
                            f'than T={T}')
        # window j (0 = latest) of a user ends (exclusive) at end - j
        first = np.repeat(np.cumsum(n_win) - n_win, n_win)
        ends = np.repeat(block_ends, n_win) - (np.arange(self.ns) - first)
        self.seq_users = np.repeat(uniq, n_win).astype(np.int32)
        self.seq_items = padded[ends[:, None] - W + np.arange(L)]
        self.seq_items = self.seq_items.astype(np.int32)
        self.seq_tgt = padded[ends[:, None] - T + np.arange(T)]
        self.seq_tgt = self.seq_tgt.astype(np.int32)
        self.test_seq = np.full((self.num_users, L), self.pad, np.int32)
        self.test_seq[uniq] = padded[block_ends[:, None] - L + np.arange(L)]

    def __len__(self):
        return self.ns

    def __getitem__(self, idx):
        """Return ``(user, seq (L,), target (T,), negative (T,))``.

        The negative has the target's shape, so that a model scoring
        ``(batch_size, 1)`` item ids gives positive and negative scores of
        one shape (the chapter's model squeezes both instead).
        """
        u = self.seq_users[idx]
        neg = sample_negatives(np.full(self.T, u), self.seen, self.rng)
        return (u, self.seq_items[idx], self.seq_tgt[idx],
                neg.astype(np.int32))


def seen_mask(candidates, num_users, num_items):
    """Boolean (num_users, num_items) mask of each user's training items."""
    seen = np.zeros((num_users, num_items), dtype=bool)
    if candidates:
        rows = np.concatenate([np.full(len(v), u) for u, v in
                               candidates.items()])
        cols = np.concatenate([np.asarray(v, np.int64) for v in
                               candidates.values()])
        seen[rows, cols] = True
    return seen


def _check_positive_int(value, name):
    """Return ``value`` as int, or raise naming the argument."""
    if isinstance(value, bool) or not float(value).is_integer() or value < 1:
        raise DataError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


if __name__ == '__main__':
    frame, n_users, n_items = read_ml100k()
    print(f'ML-100K ready: {len(frame)} ratings, {n_users} users, '
          f'{n_items} items')
