"""Where ML-100K comes from offline: the cache and PyPI's recbole wheel.

The chapter's ``d2l.read_data_ml100k`` downloads ML-100K from GroupLens.
Without that network, the copy shipped inside the ``recbole==1.2.1`` wheel
on PyPI is converted to ``u.data``/``u.item`` in a local cache, written
atomically with a checksum; :func:`caser_gluon.data.read_ml100k` reads it.
MovieLens data is never part of this repository: its licence forbids
redistribution.
"""
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pandas as pd

from .interactions import DataError

__all__ = ['default_cache_dir', 'fetch_ml100k', 'find_file', 'read_titles']

RECBOLE_WHEEL = 'recbole==1.2.1'
RECBOLE_DIR = 'recbole/dataset_example/ml-100k/'


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


def find_file(name, data_dir=None):
    """``name`` (``u.data``, ``u.item``) in the first folder that has it,
    else fetched into the cache (:func:`fetch_ml100k`)."""
    for folder in _candidate_dirs(data_dir):
        if (folder / name).is_file():
            return folder / name
    return fetch_ml100k(data_dir) / name


def read_titles(data_dir=None):
    """Movie titles of ML-100K, indexed by 0-based item id.

    Returns
    -------
    numpy.ndarray of str, shape (num_items,)
    """
    path = find_file('u.item', data_dir)
    if not path.is_file():
        raise DataError(f'{path}: ML-100K\'s titles file not found (it comes '
                        f'with u.data; run make data)')
    items = pd.read_csv(path, sep='|', header=None, encoding='latin-1',
                        usecols=[0, 1], names=['item_id', 'title'])
    titles = np.full(items.item_id.max(), '', dtype=object)
    titles[items.item_id.to_numpy() - 1] = items.title.to_numpy()
    return titles
