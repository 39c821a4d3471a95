"""MovieLens-shaped synthetic ratings, to time the chapter's Caser at scale.

The D2L chapter "Sequence-aware Recommender Systems" trains Caser on
ML-100K. The larger MovieLens releases (1M, 10M, 20M, 32M) may not be
redistributed, and downloading them is not always possible, so this module
writes files of the same shape and format: as many users, items and
ratings, the same separator and header, at least 20 ratings per user with a
long tail, Zipf-like item popularity, one rating per (user, item), and
timestamps that increase along each user's history.

The histories carry a planted sequential pattern, so that a sequence model
has something to learn that popularity does not give: items sit on a hidden
ring (a random order of all items); each history is a series of *runs*
that start at an item drawn by popularity and then walk a few steps along
the ring (one or two places at a time). The next item is therefore often
the ring-successor of the previous one. For instance, with the ring
``7 2 9 4`` a user's history may read ``2 9 4 | 5 | 9 ...`` (two runs that
start at the popular 2 and 5); the third run's 9 is dropped because the
user already has it.

Files go to ``~/.cache/caser-gluon/synthetic/<shape>-seed<seed>.<ext>``
(``$XDG_CACHE_HOME`` is honoured), never to the repository, next to a JSON
sidecar with the parameters; a file whose sidecar matches is reused::

    python benchmarks/synth_movielens.py --shape ml-10m --seed 0
    python benchmarks/synth_movielens.py --counts 943 1682 100000 --out u.data
"""
import argparse
import itertools
import json
import os
import pathlib
import time

import numpy as np

__all__ = ['SHAPES', 'VERSION', 'default_path', 'generate', 'main',
           'resolve_shape', 'sample_ratings']

VERSION = 1          # bump when the same parameters would give other data
START_TIME = 956_703_932          # 2000-04-25, the first ML-1M rating
CHUNK_RATINGS = 2_000_000         # ratings drawn per step (bounds memory)
MIN_PER_USER = 20
P_STEP = 0.6                      # chance that the next item walks the ring
ZIPF_EXPONENT = 0.9
HEADER = 'userId,movieId,rating,timestamp'

# file formats: ML-100K's u.data, ML-1M/10M's ratings.dat, ML-20M/32M's csv
_TAB = {'sep': '\t', 'header': False, 'half_stars': False, 'ext': 'data'}
_DAT = {'sep': '::', 'header': False, 'half_stars': False, 'ext': 'dat'}
_CSV = {'sep': ',', 'header': True, 'half_stars': True, 'ext': 'csv'}
SHAPES = {
    'ml-100k': {'users': 943, 'items': 1_682, 'ratings': 100_000, **_TAB},
    'ml-1m': {'users': 6_040, 'items': 3_706, 'ratings': 1_000_209, **_DAT},
    'ml-10m': {'users': 69_878, 'items': 10_677, 'ratings': 10_000_054,
               **_DAT},
    'ml-20m': {'users': 138_493, 'items': 26_744, 'ratings': 20_000_263,
               **_CSV},
    'ml-32m': {'users': 200_948, 'items': 87_585, 'ratings': 32_000_204,
               **_CSV},
    'sparse-30k': {'users': 30_000, 'items': 29_000, 'ratings': 60_000,
                   **_DAT},
}
EXTENSIONS = {'\t': 'tsv', ',': 'csv', '::': 'dat'}


def resolve_shape(shape_or_counts, *, sep=None, header=None,
                  half_stars=None):
    """The full parameters of a shape name or of ``(users, items, ratings)``.

    Parameters
    ----------
    shape_or_counts : str or tuple of 3 int
        A key of :data:`SHAPES`, or ``(users, items, ratings)`` (then
        ``'::'`` without a header by default, as ML-1M).
    sep : {'::', ',', '\\t'}, optional
    header, half_stars : bool, optional
        Override the shape's format.

    Returns
    -------
    dict
        ``name, users, items, ratings, sep, header, half_stars, ext,
        min_per_user`` (20, or half the mean if less), ``max_per_user``.
    """
    if isinstance(shape_or_counts, str):
        if shape_or_counts not in SHAPES:
            raise ValueError(f'unknown shape {shape_or_counts!r}; one of '
                             f'{", ".join(SHAPES)}')
        params = dict(SHAPES[shape_or_counts], name=shape_or_counts)
    else:
        params = dict(zip(['users', 'items', 'ratings'], shape_or_counts),
                      sep='::', header=False, half_stars=False)
        params['name'] = '{users}x{items}x{ratings}'.format(**params)
    for key, value in [('sep', sep), ('header', header),
                       ('half_stars', half_stars)]:
        if value is not None:
            params[key] = value
    if params['sep'] not in EXTENSIONS:
        raise ValueError(f"sep must be '::', ',' or '\\t', not "
                         f"{params['sep']!r}")
    if sep is not None or 'ext' not in params:
        params['ext'] = EXTENSIONS[params['sep']]
    users, items, ratings = (int(params[k])
                             for k in ('users', 'items', 'ratings'))
    mean = ratings // max(users, 1)
    params['min_per_user'] = min(MIN_PER_USER, max(1, mean // 2))
    params['max_per_user'] = min(items, max(int(0.6 * items),
                                            -(-2 * ratings // max(users, 1))))
    if not (0 < users <= ratings and 0 < items <= ratings
            and users * params['min_per_user'] <= ratings
            <= users * params['max_per_user']):
        raise ValueError(f'cannot draw {ratings} ratings of {users} users '
                         f'on {items} items with {params["min_per_user"]}'
                         f'..{params["max_per_user"]} ratings per user')
    return params


def _user_counts(rng, users, ratings, low, high):
    """Ratings per user: ``low`` plus a log-normal share, exact total.

    Returns
    -------
    numpy.ndarray of int64, shape (users,)
        Values in ``low..high`` summing to ``ratings``.
    """
    weight = rng.lognormal(0.0, 1.0, users)
    extra, room = ratings - users * low, high - low
    free = np.ones(users, dtype=bool)
    while True:     # water-filling: users over the cap get the cap
        left = extra - room * (~free).sum()
        share = np.where(free, left * weight / weight[free].sum(), room)
        over = free & (share > room)
        if not over.any():
            break
        free &= ~over
    counts = np.floor(share).astype(np.int64)
    short = extra - counts.sum()
    frac = np.where(counts < room, share - counts, -1.0)
    counts[np.argsort(-frac, kind='stable')[:short]] += 1
    return counts + low


class _Ring:
    """Items on a hidden ring, with Zipf-like popularity."""

    def __init__(self, rng, items):
        self.items = items
        self.order = rng.permutation(items)         # ring position -> item
        self.position = np.empty(items, dtype=np.int64)
        self.position[self.order] = np.arange(items)
        rank = rng.permutation(items) + 1.0
        self.cdf = np.cumsum(rank ** -ZIPF_EXPONENT)
        self.cdf /= self.cdf[-1]

    def walks(self, rng, lengths):
        """Candidate histories of the given lengths, concatenated.

        Each element starts a run (an item drawn by popularity) with
        probability ``1 - P_STEP``, else walks 1 (or 2) places along the
        ring from the previous element; each history starts a run.

        Returns
        -------
        numpy.ndarray of int64, shape (lengths.sum(),)
        """
        n = int(lengths.sum())
        starts = np.cumsum(lengths) - lengths
        jump = rng.random(n) >= P_STEP
        jump[starts] = True
        step = np.where(jump, 0, 1 + (rng.random(n) < 0.2))
        walked = np.cumsum(step)
        run = np.cumsum(jump) - 1
        first = np.flatnonzero(jump)
        popular = np.searchsorted(self.cdf, rng.random(first.size))
        origin = self.position[np.minimum(popular, self.items - 1)]
        pos = origin[run] + walked - walked[first][run]
        return self.order[pos % self.items]


def _histories(rng, ring, counts):
    """Distinct items of each user, in history order.

    Draws candidate walks ``1.5x`` longer than needed, drops repeated items,
    and draws again for users left short; the few users who still lack
    items (those who rate most of the catalogue) get unseen items at random.

    Parameters
    ----------
    counts : numpy.ndarray of int64, shape (n_users,)

    Returns
    -------
    owner, item : numpy.ndarray of int64, shape (counts.sum(),)
        Local user index (sorted) and item, each history in order.
    """
    owner = item = np.zeros(0, dtype=np.int64)
    need = counts.copy()
    for attempt in range(4):
        todo = np.flatnonzero(need > 0)
        if not todo.size:
            break
        lengths = need[todo] * (3 + attempt) // 2 + 4
        owner = np.concatenate([owner, np.repeat(todo, lengths)])
        item = np.concatenate([item, ring.walks(rng, lengths)])
        if attempt:
            order = np.argsort(owner, kind='stable')
            owner, item = owner[order], item[order]
        owner, item = _keep_first(owner, item, counts, ring.items)
        need = counts - np.bincount(owner, minlength=counts.size)
    for user in np.flatnonzero(need > 0):          # rare: near-full users
        unseen = np.setdiff1d(np.arange(ring.items), item[owner == user])
        extra = rng.choice(unseen, need[user], replace=False)
        owner = np.concatenate([owner, np.full(extra.size, user)])
        item = np.concatenate([item, extra])
    order = np.argsort(owner, kind='stable')
    return owner[order], item[order]


def _keep_first(owner, item, counts, items):
    """First occurrences of each pair, at most ``counts[owner]`` per user."""
    _, first = np.unique(owner * items + item, return_index=True)
    first.sort()                            # keeps the history order
    owner, item = owner[first], item[first]
    per_user = np.bincount(owner, minlength=counts.size)
    rank = np.arange(owner.size) - (np.cumsum(per_user) - per_user)[owner]
    keep = rank < counts[owner]
    return owner[keep], item[keep]


def _cover_items(rng, item, items):
    """Give every item a rating: missing items replace repeated ones.

    Each missing item takes the place of one rating of an item that has
    several (never its first), so no item loses its last rating and no
    (user, item) pair repeats. In place; returns ``item``.
    """
    missing = np.flatnonzero(np.bincount(item, minlength=items) == 0)
    if missing.size:
        _, first = np.unique(item, return_index=True)
        spare = np.ones(item.size, dtype=bool)
        spare[first] = False
        rows = rng.choice(np.flatnonzero(spare), missing.size, replace=False)
        item[rows] = rng.permutation(missing)
    return item


def sample_ratings(params, *, seed=0):
    """Draw the ratings of a shape, in memory.

    Parameters
    ----------
    params : dict
        From :func:`resolve_shape`.
    seed : int

    Returns
    -------
    dict of numpy.ndarray, each shape (ratings,)
        ``user`` (int32, 1-based, sorted), ``item`` (int32, original-style
        ids: sorted distinct values in ``1..1.25 * items``), ``rating``
        (float32: 1..5, or 0.5..5 in half stars) and ``timestamp`` (int64,
        increasing within each user), each user's history in time order.
    """
    users, items = params['users'], params['items']
    rng = np.random.default_rng([VERSION, seed])
    counts = _user_counts(rng, users, params['ratings'],
                          params['min_per_user'], params['max_per_user'])
    ring = _Ring(rng, items)
    bounds = np.searchsorted(np.cumsum(counts),
                             np.arange(CHUNK_RATINGS, counts.sum(),
                                       CHUNK_RATINGS))
    bounds = np.unique(np.concatenate([[0], bounds, [users]]))
    user = np.empty(params['ratings'], dtype=np.int32)
    item = np.empty(params['ratings'], dtype=np.int64)
    at = 0
    for chunk, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        chunk_rng = np.random.default_rng([VERSION, seed, chunk + 1])
        owner, got = _histories(chunk_rng, ring, counts[lo:hi])
        user[at:at + owner.size] = owner + lo + 1
        item[at:at + owner.size] = got
        at += owner.size
    item = _cover_items(rng, item, items)
    ids = np.sort(rng.choice(items * 5 // 4, items, replace=False)) + 1
    return {'user': user, 'item': ids[item].astype(np.int32),
            'rating': _stars(rng, user, item, users, items,
                             params['half_stars']),
            'timestamp': _timestamps(rng, counts)}


def _stars(rng, user, item, users, items, half_stars):
    """Ratings from a user bias, an item bias and noise, shape (n,)."""
    score = (3.6 + rng.normal(0, 0.4, users)[user - 1]
             + rng.normal(0, 0.5, items)[item]
             + rng.normal(0, 0.9, user.size).astype(np.float32))
    if half_stars:
        return np.clip(np.round(score * 2) / 2, 0.5, 5).astype(np.float32)
    return np.clip(np.round(score), 1, 5).astype(np.float32)


def _timestamps(rng, counts):
    """Strictly increasing times within each user, shape (counts.sum(),)."""
    clock = np.cumsum(1 + rng.exponential(3_600.0, int(counts.sum()))
                      .astype(np.int64))
    first = np.cumsum(counts) - counts
    start = START_TIME + rng.integers(0, 3 * 365 * 86_400, counts.size)
    return clock + np.repeat(start - clock[first], counts)


def default_path(params, *, seed=0):
    """``~/.cache/caser-gluon/synthetic/<name>-seed<seed>.<ext>``."""
    cache = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
    return (pathlib.Path(cache) / 'caser-gluon' / 'synthetic'
            / f"{params['name']}-seed{seed}.{params['ext']}")


def _digits(values, width):
    """ASCII digits of ints, right-aligned: ``text`` (n, width) uint8, and
    ``used`` (n, width) bool, False on leading zeros (0 keeps one digit)."""
    power = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)[:, None]
    text = (values // power % 10 + 48).astype(np.uint8)
    used = (values >= power) | (power == 1)
    return text, used


def _lines(columns, lo, hi, *, sep, half_stars):
    """Rows ``lo:hi`` as text, vectorised: bytes."""
    pieces = []
    for key in ('user', 'item', 'rating', 'timestamp'):
        value = columns[key][lo:hi]
        if key == 'rating':     # '4' or, in half stars, '4.0' and '3.5'
            twice = np.round(value * 2).astype(np.int64)
            text, used = _digits(twice // 2, 1)
            if half_stars:
                tail = np.where(twice % 2 == 1, ord('5'), ord('0'))
                text = np.column_stack([text, np.full(text.shape, ord('.')),
                                        tail]).astype(np.uint8)
                used = np.ones(text.shape, dtype=bool)
        else:
            text, used = _digits(value, len(str(int(value.max()))))
        end = '\n' if key == 'timestamp' else sep
        mark = np.frombuffer(end.encode(), dtype=np.uint8)
        pieces += [(text, used), (np.tile(mark, (hi - lo, 1)),
                                  np.ones((hi - lo, mark.size), dtype=bool))]
    text = np.hstack([t for t, _ in pieces])
    used = np.hstack([u for _, u in pieces])
    return text[used].tobytes()


def _write(path, columns, *, sep, header, half_stars, chunk=1_000_000):
    """Write the columns as text, ``chunk`` rows at a time."""
    with open(path, 'wb') as f:
        if header:
            f.write((HEADER.replace(',', sep) + '\n').encode())
        for lo in range(0, columns['user'].size, chunk):
            hi = min(lo + chunk, columns['user'].size)
            f.write(_lines(columns, lo, hi, sep=sep, half_stars=half_stars))


def generate(shape_or_counts, *, seed=0, path=None, sep=None, header=None,
             half_stars=None, quiet=True):
    """Write (or reuse) a synthetic ratings file of a MovieLens shape.

    Parameters
    ----------
    shape_or_counts : str or tuple of 3 int
        A key of :data:`SHAPES` (``'ml-10m'``) or ``(users, items,
        ratings)``.
    seed : int
        The same seed and parameters give the same file, byte for byte.
    path : path-like, optional
        Default :func:`default_path`. A JSON sidecar ``<path>.json``
        records the parameters; a file whose sidecar matches is reused.
    sep : {'::', ',', '\t'}, optional
    header, half_stars : bool, optional
        The shape's format unless given (ML-1M/10M: ``::``, no header;
        ML-20M/32M: ``userId,movieId,rating,timestamp``, half stars).
    quiet : bool
        No progress line.

    Returns
    -------
    pathlib.Path
        The ratings file.
    """
    params = resolve_shape(shape_or_counts, sep=sep, header=header,
                           half_stars=half_stars)
    path = pathlib.Path(path or default_path(params, seed=seed))
    record = dict(params, seed=seed, version=VERSION)
    sidecar = path.with_name(path.name + '.json')
    if path.is_file() and sidecar.is_file():
        old = json.loads(sidecar.read_text())
        if old.get('params') == record and \
                old.get('bytes') == path.stat().st_size:
            return path
    start = time.perf_counter()
    columns = sample_ratings(params, seed=seed)
    drawn = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f'.{os.getpid()}.tmp')
    try:
        _write(tmp, columns, sep=params['sep'], header=params['header'],
               half_stars=params['half_stars'])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    done = time.perf_counter()
    sidecar.write_text(json.dumps({
        'params': record, 'bytes': path.stat().st_size,
        'draw_seconds': round(drawn - start, 2),
        'write_seconds': round(done - drawn, 2)}, indent=2) + '\n')
    if not quiet:
        print(f'{path}: {params["ratings"]:,} ratings, '
              f'{path.stat().st_size / 1e6:.0f} MB, drawn in '
              f'{drawn - start:.1f} s, written in {done - drawn:.1f} s')
    return path


def main(argv=None):
    """``python benchmarks/synth_movielens.py --shape ml-10m``."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument('--shape', default='ml-1m', choices=sorted(SHAPES),
                       help='MovieLens shape (default: ml-1m)')
    which.add_argument('--counts', type=int, nargs=3,
                       metavar=('USERS', 'ITEMS', 'RATINGS'),
                       help='any shape instead of --shape')
    p.add_argument('--seed', type=int, default=0, help='default: 0')
    p.add_argument('--out', default=None,
                   help='file (default: ~/.cache/caser-gluon/synthetic/'
                        '<shape>-seed<seed>.<ext>)')
    p.add_argument('--sep', default=None, choices=['::', ',', 'tab'],
                   help="separator (default: the shape's)")
    p.add_argument('--header', action=argparse.BooleanOptionalAction,
                   help="a header line (default: the shape's)")
    args = p.parse_args(argv)
    sep = '\t' if args.sep == 'tab' else args.sep
    try:
        path = generate(args.counts or args.shape, seed=args.seed,
                        path=args.out, sep=sep, header=args.header,
                        quiet=False)
    except (ValueError, OSError) as err:
        p.exit(2, f'{p.prog}: error: {err}\n')
    print(path)


if __name__ == '__main__':
    main()
