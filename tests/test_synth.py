"""The synthetic MovieLens generator of ``benchmarks/synth_movielens.py``.

Small shapes only (well under a second each); timings of the generator
and of training on its files are in ``benchmarks/bench_scale.py``.
"""
import collections
import itertools

import numpy as np
import pandas as pd
import pytest
from helpers import load_benchmark

from caser_gluon import data as data_lib

TINY = (50, 40, 1_500)          # users, items, ratings
NAMES = ['user', 'item', 'rating', 'timestamp']


@pytest.fixture(scope='module')
def synth():
    """The generator, imported from its file (benchmarks is no package)."""
    return load_benchmark('synth_movielens')


def _read(path, sep, header):
    """The file as a DataFrame, read independently of the package."""
    return pd.read_csv(path, sep=sep, header=0 if header else None,
                       names=NAMES, engine='python')


def test_tiny_shape_is_exact(synth, tmp_path):
    path = synth.generate(TINY, seed=3, path=tmp_path / 'r.dat')
    df = _read(path, '::', False)
    assert len(df) == 1_500
    assert sorted(df.user.unique()) == list(range(1, 51))
    assert df.item.nunique() == 40
    # min(20, mean 30 // 2) = 15 ratings at least, all 40 items at most
    per_user = df.user.value_counts()
    assert per_user.min() >= 15
    assert per_user.max() <= 40
    assert not df.duplicated(['user', 'item']).any()
    assert set(df.rating) <= {1, 2, 3, 4, 5}


def test_timestamps_increase_within_each_user(synth, tmp_path):
    df = _read(synth.generate(TINY, seed=1, path=tmp_path / 'r.dat'),
               '::', False)
    assert (df.groupby('user').timestamp.diff().dropna() > 0).all()
    assert df.user.is_monotonic_increasing


@pytest.mark.parametrize('sep, header, half_stars', [
    ('::', False, False), (',', True, True), ('\t', False, False)])
def test_separator_header_and_stars(synth, tmp_path, sep, header,
                                    half_stars):
    path = synth.generate(TINY, seed=0, path=tmp_path / 'r.txt', sep=sep,
                          header=header, half_stars=half_stars)
    lines = path.read_text().splitlines()
    assert len(lines) == 1_500 + header
    if header:
        assert lines[0] == 'userId,movieId,rating,timestamp'
    fields = [line.split(sep) for line in lines[header:]]
    assert {len(f) for f in fields} == {4}
    stars = np.array([float(f[2]) for f in fields])
    if half_stars:          # '4.0' and '3.5', as in ML-20M's ratings.csv
        assert all(len(f[2]) == 3 and f[2][1] == '.' for f in fields)
        assert np.all(stars * 2 == np.round(stars * 2))
        assert 0.5 <= stars.min() and stars.max() <= 5
        assert (stars % 1 == 0.5).any()
    else:
        assert {f[2] for f in fields} <= set('12345')


def test_shapes_keep_their_real_format(synth):
    assert synth.resolve_shape('ml-1m')['sep'] == '::'
    assert not synth.resolve_shape('ml-10m')['header']
    ml20 = synth.resolve_shape('ml-20m')
    assert (ml20['sep'], ml20['header'], ml20['half_stars']) == \
        (',', True, True)


def test_deterministic_per_seed_and_reused(synth, tmp_path):
    a = synth.generate(TINY, seed=7, path=tmp_path / 'a.dat')
    b = synth.generate(TINY, seed=7, path=tmp_path / 'b.dat')
    c = synth.generate(TINY, seed=8, path=tmp_path / 'c.dat')
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    before = a.stat().st_mtime_ns
    assert synth.generate(TINY, seed=7, path=a) == a
    assert a.stat().st_mtime_ns == before          # sidecar matched
    synth.generate(TINY, seed=8, path=a)           # other params: redrawn
    assert a.read_bytes() == c.read_bytes()


def test_default_path_is_in_the_cache(synth, tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    path = synth.generate(TINY, seed=2)
    assert path == (tmp_path / 'caser-gluon' / 'synthetic'
                    / '50x40x1500-seed2.dat')
    assert path.with_name(path.name + '.json').is_file()


@pytest.mark.parametrize('sep, header', [('::', False), (',', True)])
def test_readable_by_load_ratings(synth, tmp_path, sep, header):
    path = synth.generate(TINY, seed=0, path=tmp_path / 'r.txt', sep=sep,
                          header=header, half_stars=header)
    df, num_users, num_items, info = data_lib.load_ratings(path)
    assert (len(df), num_users, num_items) == (1_500, 50, 40)
    assert info['rows_read'] == 1_500
    assert df.item_id.max() == 40


def _accuracies(df):
    """Next-item accuracy of the successor rule and of popularity.

    Learns, on the first 80 % of each user's history, the most frequent
    successor of each item and the items' popularity; then predicts each
    later item from the one before it (successor rule) or as the most
    popular item the user has not rated yet.
    """
    df = df.sort_values(['user', 'timestamp'])
    histories = [g.to_numpy() for _, g in df.groupby('user').item]
    follows = collections.defaultdict(collections.Counter)
    popular = collections.Counter()
    for items in histories:
        train = items[:int(0.8 * len(items))]
        popular.update(train.tolist())
        for prev, nxt in itertools.pairwise(train):
            follows[prev][nxt] += 1
    ranked = [i for i, _ in popular.most_common()]
    hits = np.zeros(2)
    total = 0
    for items in histories:
        cut = int(0.8 * len(items))
        for t in range(cut, len(items)):
            seen = set(items[:t].tolist())
            guess = follows[items[t - 1]].most_common(1)
            hits[0] += bool(guess) and guess[0][0] == items[t]
            hits[1] += next(i for i in ranked if i not in seen) == items[t]
            total += 1
    return hits / total


# Sparser than TINY (a user rates a quarter of the items, not 3/4), so that
# popularity among unseen items is not a near-certain guess.
SPARSE = (60, 200, 3_000)


def test_planted_sequence_beats_popularity(synth, tmp_path):
    path = synth.generate(SPARSE, seed=0, path=tmp_path / 'r.dat')
    successor, popularity = _accuracies(_read(path, '::', False))
    assert successor > 3 * popularity


def test_without_ring_walks_the_successor_rule_loses(synth, tmp_path,
                                                     monkeypatch):
    monkeypatch.setattr(synth, 'P_STEP', 0.0)    # every item by popularity
    path = synth.generate(SPARSE, seed=0, path=tmp_path / 'r.dat')
    successor, popularity = _accuracies(_read(path, '::', False))
    assert successor < popularity


def test_impossible_counts_are_one_line_errors(synth, capsys):
    with pytest.raises(ValueError, match='cannot draw 30 ratings'):
        synth.resolve_shape((50, 40, 30))         # fewer ratings than users
    with pytest.raises(ValueError, match='cannot draw 50 ratings'):
        synth.resolve_shape((5, 100, 50))         # an item without rating
    with pytest.raises(SystemExit) as exit_info:
        synth.main(['--counts', '10', '5', '3', '--out', 'unused.dat'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'cannot draw 3 ratings' in err


@pytest.fixture(scope='module')
def bench():
    """``benchmarks/bench_scale.py``, imported from its file."""
    return load_benchmark('bench_scale')


def test_bench_scale_report(bench):
    """Exponents fitted on exact powers; '-' and the error of a failure."""
    rows = [{'shape': name, 'users': 10, 'items': 10, 'ratings': n,
             'exit': 0, 'epoch_seconds': 2e-6 * n ** 1.5,
             'peak_rss_gb': 0.1 + 0 * n, 'wall_seconds': 5.0,
             'date': 'today', 'load_before': 1.0, 'load_after': 1.0,
             'command': 'python -m caser_gluon.train'}
            for name, n in [('ml-a', 1e4), ('ml-b', 1e5), ('ml-c', 1e6),
                            ('other', 1e7)]]   # 'other' is not fitted
    rows[-1]['epoch_seconds'] = 1.0
    rows.append(dict(rows[0], shape='ml-d', ratings=1e8, exit=1,
                     error='MemoryError: out of memory'))
    slopes = bench.fit_exponents(rows)
    assert slopes['epoch_seconds'][0] == pytest.approx(1.5)
    assert slopes['epoch_seconds'][1] == ['ml-a', 'ml-b', 'ml-c']
    assert slopes['peak_rss_gb'][0] == pytest.approx(0.0, abs=1e-9)
    assert 'load_seconds' not in slopes
    text = bench.to_markdown(rows, {'cpu': 'x', 'nproc': 2, 'memory_gb': 1,
                                    'mxnet': '1.9.1'}, command='bench')
    first = text.splitlines()[2].split(' | ')
    assert first[4:6] == ['-', '-']             # load, windows: absent
    assert 'exit 1: MemoryError: out of memory |' in text
    assert 'epoch time grows as ratings^1.50 (ml-a, ml-b, ml-c)' in text


def test_bench_scale_repeats_give_medians(bench):
    runs = [{'exit': 0, 'epoch_seconds': t, 'wall_seconds': 2 * t,
             'load_after': t} for t in (3.0, 1.0, 2.0)]
    row = bench._median_row(runs)
    assert (row['epoch_seconds'], row['wall_seconds']) == (2.0, 4.0)
    assert [r['epoch_seconds'] for r in row['repeats']] == [3.0, 1.0, 2.0]
    failed = dict(runs[1], exit=1, error='MemoryError')
    assert bench._median_row([runs[0], failed]) is failed
