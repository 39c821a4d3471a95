"""Reading any ratings file: the chapter's ML-100K reader, generalised.

The chapter reads ML-100K's ``u.data`` (``user item rating timestamp``,
tab separated). This module reads that format and its relatives at the
scale of MovieLens-32M: tab, comma or ``::`` separated (MovieLens-1M's
``ratings.dat``), with or without a header, with integer ids or string
ids (Amazon ASINs, hashes), then filters (minimum rating, k-core) and
remaps ids to ``1..num_users`` and ``1..num_items``.

Two readers share one set of rules. The fast one is pandas' C parser with
typed columns. When it fails or finds a bad value, the slow one reads the
file line by line, checks every field and raises a :class:`DataError`
naming the file, the line and what was expected; so its messages are the
only ones a user sees, whichever reader found the problem.
"""
import csv
import hashlib
import pathlib
import re
import warnings

import numpy as np
import pandas as pd

from .interactions import DataError, DataWarning, duplicated

__all__ = ['NAMES', 'load_ratings', 'read_ratings']

NAMES = ['user_id', 'item_id', 'rating', 'timestamp']
ENCODING = 'utf-8-sig'          # a UTF-8 byte-order mark is dropped
ERRORS = 'surrogateescape'      # other bytes survive as they are
_DIGITS = re.compile(r'\s*[+-]?\d+\s*', re.ASCII)


def _check_file(path):
    """Raise :class:`DataError` unless ``path`` is a readable file."""
    if not path.exists():
        raise DataError(f'{path}: ratings file not found')
    if not path.is_file():
        raise DataError(f'{path}: not a file (a ratings file was expected)')
    try:
        open(path, 'rb').close()
    except OSError as err:
        raise DataError(f'{path}: cannot be read ({err.strerror})') from None
    if path.stat().st_size == 0:
        raise DataError(f'{path}: the ratings file is empty')


def _first_line(path):
    """The first line of ``path``, without a byte-order mark."""
    with open(path, encoding=ENCODING, errors=ERRORS) as f:
        return f.readline().rstrip('\r\n')


def _sniff_sep(path):
    """The separator of a ratings file's first line: ``::``, tab or comma."""
    line = _first_line(path)
    for sep in ['::', '\t', ',']:
        if sep in line:
            return sep
    raise DataError(f'{path}, line 1: no separator found (tab, comma or '
                    f'"::"): {line.strip()!r}')


def _is_header(line, sep):
    """A first line none of whose fields is a number is a header."""
    return all(_to_float(field) is None for field in line.split(sep))


def _to_float(text):
    """``text`` as a float, or None (ASCII only, no ``_``)."""
    if not text.isascii() or '_' in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _to_int(text):
    """``text`` as an int64 value, or None: digits, or a whole float."""
    if _DIGITS.fullmatch(text):
        value = int(text)
    else:
        value = _to_float(text)
        if value is None or not np.isfinite(value) or value != int(value):
            return None
        value = int(value)
    return value if -2 ** 63 <= value < 2 ** 63 else None


# ---------------------------------------------------------------------------
# The slow reader: every line checked, the reference for every message
# ---------------------------------------------------------------------------

class _Rules:
    """What a valid line is: the options of :func:`read_ratings`."""

    def __init__(self, path, sep, header, ids, integer_ratings, min_rating,
                 max_rating):
        self.path, self.sep, self.header, self.ids = path, sep, header, ids
        self.integer_ratings = integer_ratings
        self.low = -np.inf if min_rating is None else min_rating
        self.high = np.inf if max_rating is None else max_rating
        self.range = f'{min_rating}..{max_rating}'

    def error(self, n, line, what):
        """A :class:`DataError` for line ``n``."""
        return DataError(f'{self.path}, line {n}: {what} (line reads '
                         f'{line!r}; expected user item rating timestamp '
                         f'separated by {self.sep!r})')

    def parse(self, n, line):
        """The four values of line ``n``, or raise :class:`DataError`."""
        fields = line.split(self.sep)
        if len(fields) != 4:
            raise DataError(f'{self.path}, line {n}: expected 4 fields '
                            f'(user item rating timestamp) separated by '
                            f'{self.sep!r}, found {len(fields)}: {line!r}')
        ids = []
        for name, text in zip(NAMES[:2], fields[:2]):
            value = _to_int(text)
            if self.ids == 'int' and value is None:
                raise self.error(n, line, f'{name} is not an integer')
            if self.ids != 'int':
                if not text.strip():
                    raise self.error(n, line, f'{name} is empty')
                value = text
            ids.append(value)
        rating = (_to_int if self.integer_ratings else _to_float)(fields[2])
        if rating is None or not np.isfinite(rating):
            what = 'an integer' if self.integer_ratings else 'a number'
            raise self.error(n, line, f'rating is not {what}')
        stamp = _to_int(fields[3])
        if stamp is None and not self.integer_ratings:
            stamp = _to_float(fields[3])            # float timestamps
        if stamp is None or not np.isfinite(stamp):
            raise self.error(n, line, 'timestamp is not an integer')
        if not self.low <= rating <= self.high:
            raise DataError(f'{self.path}, line {n}: rating {rating} '
                            f'outside {self.range}')
        if self.ids == 'int' and min(ids) < 1:
            raise DataError(f'{self.path}, line {n}: user and item ids '
                            f'must be >= 1')
        return ids[0], ids[1], rating, stamp


def _read_slow(rules):
    """Read ``rules.path`` line by line; raise at the first bad line."""
    columns = ([], [], [], [])
    with open(rules.path, encoding=ENCODING, errors=ERRORS) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip('\r\n')
            if (n == 1 and rules.header) or not line.strip(' '):
                continue             # as pandas: lines of spaces are blank
            for column, value in zip(columns, rules.parse(n, line)):
                column.append(value)
    if not columns[0]:
        raise DataError(f'{rules.path}: the ratings file has no rating')
    tokens = (rules.ids != 'int',) * 2
    ids = [pd.Categorical(c) if tokens[0] else np.array(c, dtype=np.int64)
           for c in columns[:2]]
    df = pd.DataFrame({
        'user_id': ids[0], 'item_id': ids[1],
        'rating': np.array(columns[2], dtype=np.int64
                           if rules.integer_ratings else float),
        'timestamp': np.array(columns[3], dtype=np.int64 if all(
            isinstance(v, int) for v in columns[3]) else float)})
    return _numeric_tokens(df, rules, tokens)


# ---------------------------------------------------------------------------
# The fast reader: pandas' C parser, typed columns
# ---------------------------------------------------------------------------

def _read_fast(rules, tokens, *, chunksize=1 << 20):
    """Read with pandas' C parser, or return None if any value is wrong.

    ``tokens`` is a pair of bools: read user ids / item ids as strings.
    The file is read in chunks of ``chunksize`` lines, each checked and
    kept as four NumPy columns (no pandas block copies).
    """
    double = rules.sep == '::'       # '1::2' is '1', '', '2' split on ':'
    where = [0, 2, 4, 6] if double else [0, 1, 2, 3]
    dtype = {where[0]: 'category' if tokens[0] else np.int64,
             where[1]: 'category' if tokens[1] else np.int64,
             where[2]: np.int64 if rules.integer_ratings else np.float64,
             where[3]: np.int64}
    dtype.update({k: 'category' for k in (1, 3, 5) if double})
    parts = []
    try:
        with pd.read_csv(rules.path, sep=rules.sep[0], header=None,
                         skiprows=1 if rules.header else 0, dtype=dtype,
                         engine='c', quoting=csv.QUOTE_NONE,
                         keep_default_na=False, na_values=[''],
                         encoding=ENCODING, encoding_errors=ERRORS,
                         chunksize=chunksize) as reader:
            for chunk in reader:
                if chunk.shape[1] != len(dtype) or (double and not all(
                        chunk[k].isna().all() for k in (1, 3, 5))):
                    return None
                columns = [chunk[k] for k in where]
                if not _valid(columns, [dtype[k] for k in where], rules):
                    return None
                parts.append([c.array if t else c.to_numpy()
                              for c, t in zip(columns, tokens + (0, 0))])
    except (ValueError, OverflowError, pd.errors.ParserError,
            pd.errors.EmptyDataError):
        return None
    if not parts:
        return None
    df = pd.DataFrame({name: _concat([p[k] for p in parts])
                       for k, name in enumerate(NAMES)}, copy=False)
    return _numeric_tokens(df, rules, tokens) if any(tokens) else df


def _valid(columns, dtypes, rules):
    """Whether a chunk's four columns hold only valid values."""
    if any(c.dtype != t for c, t in zip(columns, dtypes)):
        return False                 # e.g. uint64 for a huge id
    if any(c.isna().any() for c in columns):
        return False
    rating = columns[2].to_numpy()
    if not (np.isfinite(rating).all() and (rating >= rules.low).all()
            and (rating <= rules.high).all()):
        return False
    return rules.ids != 'int' or min(columns[0].min(), columns[1].min()) >= 1


def _concat(parts):
    """One column from its chunks (categoricals: union of categories)."""
    if isinstance(parts[0], pd.Categorical):
        return pd.api.types.union_categoricals(parts)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _numeric_tokens(df, rules, tokens):
    """In ``ids='auto'``, turn token columns whose ids are all ints to ints.

    A column that mixes integer ids with other tokens stays tokens, with a
    :class:`DataWarning` if one of those is a number (``nan``, ``2.5``).
    """
    for name, token in zip(NAMES[:2], tokens):
        if not token:
            continue
        cats = df[name].cat.categories
        if (cats.str.strip() == '').any():
            return None
        if rules.ids == 'token':
            continue
        values = [_to_int(c) for c in cats]
        ints = sum(v is not None for v in values)
        if ints == len(cats):
            df[name] = np.asarray(values, np.int64)[df[name].cat.codes]
            continue
        odd = [c for c, v in zip(cats, values)
               if v is None and _to_float(c) is not None]
        if ints and odd:              # e.g. 'nan' among integer ids
            warnings.warn(f'{rules.path}: {name} read as string tokens, '
                          f'but {odd[0]!r} looks like a broken number '
                          f'({ints} of the {len(cats)} ids are integers); '
                          f'pass ids=\'int\' to reject such lines',
                          DataWarning, stacklevel=4)
    return df


# ---------------------------------------------------------------------------
# The public readers
# ---------------------------------------------------------------------------

def read_ratings(path, *, sep='\t', min_rating=1, max_rating=5,
                 integer_ratings=True, ids='int'):
    """Read a ``user item rating timestamp`` file, checking every value.

    Parameters
    ----------
    path : path-like
        The ratings file (ML-100K's ``u.data`` format by default). A first
        line none of whose fields is a number is a header, and skipped; a
        UTF-8 byte-order mark is ignored.
    sep : str
        Field separator: ``'\\t'``, ``','``, ``'::'`` or ``'auto'``.
    min_rating, max_rating : float or None
        Allowed rating range (``None``: no bound).
    integer_ratings : bool
        Require integer ratings (ML-100K); ``False`` accepts e.g. ``4.5``,
        and non-integer timestamps (then float64).
    ids : {'int', 'token', 'auto'}
        ``'int'``: ids are integers >= 1 (MovieLens). ``'token'``: ids are
        strings (Amazon ASINs, hashes). ``'auto'``: per column, integers if
        every id is one, else strings.

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id, item_id, rating, timestamp`` in file order:
        int64 ids (categorical of str for string ids), the rating int64
        (float64 when ``integer_ratings=False``), the timestamp int64.
        ``df.attrs['duplicates']`` counts duplicate (user, item, timestamp)
        rows, which are kept and reported with a ``DataWarning``.

    Raises
    ------
    DataError
        Naming the file and the first bad line: missing, unreadable or
        empty file, wrong number of fields, a field that is not an
        integer (or a number), a rating out of range, an id below 1.
    """
    path = pathlib.Path(path)
    if ids not in ('int', 'token', 'auto'):
        raise DataError(f"ids must be 'int', 'token' or 'auto', got {ids!r}")
    _check_file(path)
    if sep == 'auto':
        sep = _sniff_sep(path)
    header = _is_header(_first_line(path), sep)
    rules = _Rules(path, sep, header, ids, integer_ratings, min_rating,
                   max_rating)
    tries = [(ids == 'token',) * 2]
    if ids == 'auto':
        tries = [_guess_tokens(path, sep, header), (True, True)]
    for tokens in dict.fromkeys(tries):
        df = _read_fast(rules, tokens)
        if df is not None:
            break
    else:
        df = _read_slow(rules)
    _report_duplicates(df, path, first=1 + header)
    return df


def _guess_tokens(path, sep, header):
    """Whether the first rating's user and item ids are not integers."""
    with open(path, encoding=ENCODING, errors=ERRORS) as f:
        lines = [f.readline() for _ in range(1 + header)]
    fields = lines[-1].rstrip('\r\n').split(sep) + ['', '']
    return _to_int(fields[0]) is None, _to_int(fields[1]) is None


def _report_duplicates(df, path, *, first):
    """Count duplicate (user, item, timestamp) rows; warn of any."""
    dup = duplicated(df)
    count = int(dup.sum())
    df.attrs['duplicates'] = count
    if count:
        row = int(np.argmax(dup))
        warnings.warn(f'{path}: {count} duplicate (user, item, timestamp) '
                      f'rows, kept; the first is rating {row + 1}, on line '
                      f'{row + first} unless the file has blank lines',
                      DataWarning, stacklevel=3)


def _codes(column):
    """0-based codes of ``column`` in the order of its sorted values.

    Returns
    -------
    codes : numpy.ndarray of int64, shape (n,)
    uniques : numpy.ndarray, shape (num_distinct,)
        int64 ids, or str tokens (object).
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        cats = np.asarray(column.cat.categories, dtype=object)
        order = np.argsort(cats.astype(str), kind='stable')
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return rank[column.cat.codes.to_numpy()], cats[order]
    codes, uniques = pd.factorize(column, sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def _k_core(users, items, k):
    """Mask of the rows left once users and items with < k rows are gone."""
    keep = np.ones(len(users), dtype=bool)
    while k > 1:
        u, i = users[keep], items[keep]
        ok = (np.bincount(u)[u] >= k) & (np.bincount(i)[i] >= k)
        if ok.all() or not len(ok):
            break
        keep[np.flatnonzero(keep)[~ok]] = False
    return keep


def load_ratings(path, *, sep='auto', min_rating=None, k_core=0,
                 ids='auto'):
    """Any ``user item rating timestamp`` file, ready for the chapter's path.

    Reads the file (tab, comma or ``::`` separated, e.g. MovieLens 1M's
    ``ratings.dat``; integer or string ids, see :func:`read_ratings`),
    keeps ratings ``>= min_rating``, applies a ``k``-core filter (users
    and items with fewer than ``k_core`` interactions are dropped until
    none is left) and remaps ids to ``1..num_users`` and ``1..num_items``
    in the order of the original ids (numeric order for integer ids,
    string order for tokens).

    Returns
    -------
    df : pandas.DataFrame
        Remapped ``user_id, item_id`` (int64), ``rating`` (float64),
        ``timestamp``, file order.
    num_users, num_items : int
    info : dict
        ``path``, ``sha256`` of the file, ``rows_read``, ``rows_kept``,
        ``user_ids`` and ``item_ids``: numpy arrays, the original id of
        each new id - 1 (int64, or object arrays of str tokens).
    """
    path = pathlib.Path(path)
    df = read_ratings(path, sep=sep, min_rating=None, max_rating=None,
                      integer_ratings=False, ids=ids)
    rows_read = len(df)
    users, user_ids = _codes(df.pop('user_id'))
    items, item_ids = _codes(df.pop('item_id'))
    keep = np.ones(len(df), dtype=bool)
    if min_rating is not None:
        keep = df.rating.to_numpy() >= min_rating
    keep[keep] = _k_core(users[keep], items[keep], k_core)
    if not keep.any():
        raise DataError(f'{path}: no rating left after min_rating='
                        f'{min_rating} and k_core={k_core}')
    if not keep.all():                  # else no copy of 4 columns
        users, items, df = users[keep], items[keep], df[keep]
    users, user_ids = _compact(users, user_ids)
    items, item_ids = _compact(items, item_ids)
    users += 1
    items += 1
    out = pd.DataFrame({'user_id': users, 'item_id': items,
                        'rating': df.rating.to_numpy(),
                        'timestamp': df.timestamp.to_numpy()}, copy=False)
    info = {'path': str(path), 'sha256': _sha256(path),
            'rows_read': rows_read, 'rows_kept': len(out),
            'user_ids': user_ids, 'item_ids': item_ids}
    return out, len(user_ids), len(item_ids), info


def _compact(codes, uniques):
    """Renumber ``codes`` to ``0..m-1`` over the values still used."""
    used = np.bincount(codes, minlength=len(uniques)) > 0
    if used.all():
        return codes, uniques
    new = np.cumsum(used) - 1
    return new[codes], uniques[used]


def _sha256(path):
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
