"""The run folder: configuration, metrics, plot, parameters, checkpoints.

Not in the chapter, which prints its results. Every run writes one folder
(``runs/caser-<time>``, or ``--out DIR``):

* ``config.json``: the full configuration and what the data was;
* ``metrics.json`` / ``metrics.csv``: one record per epoch, rewritten after
  every epoch (strict JSON: a non-finite value is written as ``null``);
* ``metrics.png``: test hit rate and AUC, and the training loss, by epoch;
* ``caser.params``: the trained parameters; ``recommend.npz``: what
  ``caser-gluon recommend`` needs (each user's last ``L`` items and
  training items, and the original ids of a ``--ratings`` file);
* ``checkpoint.json`` and the files it names: the last complete epoch.

A folder is never taken over silently: a folder that already holds a run
is refused unless ``overwrite=True`` (or it is resumed), two runs never get
the same default name, and a run holds a lock on its folder while it
writes, so a second process writing the same folder is refused.

Checkpoints commit with one rename: each epoch's parameters and optimiser
states are written under new names (``checkpoint-e3.params``), then
``checkpoint.json``, which names them with their checksums, replaces the
previous one atomically; only then are the previous epoch's files
removed. A process killed at any moment leaves a resumable last epoch.
"""
import csv
import fcntl
import hashlib
import json
import math
import os
import pathlib
import time

import numpy as onp
from mxnet.base import MXNetError

__all__ = ['RunError', 'RunFolder', 'fresh_name', 'load_params',
           'strict_json']

META = 'checkpoint.json'
#: files a run writes (removed by ``overwrite=True``)
RUN_FILES = ('config.json', 'metrics.json', 'metrics.csv', 'metrics.png',
             'caser.params', 'best.params', 'result.json', 'recommend.npz',
             META)


class RunError(ValueError):
    """A run folder that cannot be used, or a damaged checkpoint."""


def strict_json(value):
    """JSON text of ``value`` with non-finite floats as ``null``."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), indent=2, allow_nan=False) + '\n'


def _atomic_write(path, text):
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(2 ** 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def fresh_name(prefix='caser'):
    """``runs/<prefix>-<time>``, with a suffix if that folder exists."""
    base = pathlib.Path('runs') / time.strftime(f'{prefix}-%Y%m%d-%H%M%S')
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f'{base.name}-{n}')
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RunError(f'{base}: no free run folder name')


def _check_writable(path):
    """Create ``path`` (a folder), or raise RunError naming the problem."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise RunError(f'--out {path}: {parent} is a file, not a folder')
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f'--out {path}: cannot create it ({err.strerror})'
                       ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunError(f'--out {path}: not writable')


class RunFolder:
    """The folder of one run, locked while this process writes it.

    Parameters
    ----------
    path : path-like, optional
        The folder (default: a fresh ``runs/<prefix>-<time>``).
    overwrite : bool
        Replace the run files of a folder that holds a finished run.
    resume : bool
        Continue the run in ``path`` (its files are kept).
    owner : bool
        ``False`` for a worker that writes only its own files (the ranks
        other than 0 of a distributed run): no lock, no shared files.
    prefix : str
        Start of a fresh folder's name.
    files : tuple of str
        The files that make a folder hold a run (default: a training's).
    """

    def __init__(self, path=None, *, overwrite=False, resume=False,
                 owner=True, prefix='caser', files=RUN_FILES):
        self.owner, self.history, self._lock = owner, [], None
        self.files = files
        if path is None and owner:
            self.dir, self.created = fresh_name(prefix), True
        else:
            self.dir = pathlib.Path(path)
            self.created = not self.dir.exists()
        if not owner:
            return
        _check_writable(self.dir)
        self._take_lock()
        held = [n for n in files if (self.dir / n).exists()]
        if held and not (overwrite or resume):
            self.close()
            raise RunError(f'--out {self.dir}: already holds a run ('
                           f'{held[0]}); pass --overwrite to replace it, '
                           f'--resume {self.dir} to continue it, or '
                           'choose another --out')
        if overwrite and not resume:
            self._remove_run_files()

    def _take_lock(self):
        fd = os.open(self.dir / '.lock', os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(f'--out {self.dir}: another process is writing '
                           'this run folder') from None
        self._lock = fd

    def _remove_run_files(self):
        for name in self.files:
            (self.dir / name).unlink(missing_ok=True)
        for path in self.dir.glob('checkpoint-e*'):
            path.unlink()

    def close(self):
        """Release the folder's lock; remove the folder if it stayed empty.

        A run that failed before writing anything (bad data, a bad flag
        found late) leaves no empty folder behind, unless the folder was
        there before.
        """
        if self._lock is None:
            return
        os.close(self._lock)
        self._lock = None
        lock = self.dir / '.lock'
        if self.created and [p.name for p in self.dir.iterdir()] == ['.lock']:
            lock.unlink(missing_ok=True)
            self.dir.rmdir()

    def write_config(self, config):
        """Write ``config.json`` (a dict)."""
        if self.owner:
            _atomic_write(self.dir / 'config.json', strict_json(config))

    def add(self, record):
        """Append one epoch's record and rewrite the metrics files."""
        self.history.append(record)
        if not self.owner:
            return
        _atomic_write(self.dir / 'metrics.json', strict_json(self.history))
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        tmp = self.dir / 'metrics.csv.tmp'
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, self.dir / 'metrics.csv')

    def save_params(self, net, name='caser.params'):
        """Save ``net``'s parameters as ``name`` in the folder, atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / (name + '.tmp')
        net.save_parameters(str(tmp))
        os.replace(tmp, self.dir / name)
        return self.dir / name

    def save_arrays(self, name, **arrays):
        """Save NumPy ``arrays`` as ``name`` (``.npz``), atomically."""
        if not self.owner:
            return
        tmp = self.dir / (name + '.tmp.npz')
        onp.savez(tmp, **arrays)
        os.replace(tmp, self.dir / name)

    def plot(self, *, loss_name='loss'):
        """``metrics.png``: hit rate and AUC by epoch, and the loss."""
        if self.owner and self.history:
            _plot(self.history, self.dir / 'metrics.png', loss_name)

    # -- checkpoints ------------------------------------------------------

    def save_checkpoint(self, net, trainer, *, epoch, average=None):
        """Commit the checkpoint of ``epoch`` (see the module docstring),
        with the running ``average`` of the parameters if given."""
        if not self.owner:
            return
        files = {'params': self.dir / f'checkpoint-e{epoch}.params',
                 'states': self.dir / f'checkpoint-e{epoch}.states'}
        net.save_parameters(str(files['params']))
        trainer.save_states(str(files['states']))
        if average is not None:
            files['average'] = self.dir / f'checkpoint-e{epoch}.average.npz'
            onp.savez(files['average'], **average.state())
        meta = {'epoch': epoch, 'history': self.history}
        for key, path in files.items():
            meta[key], meta[f'{key}_sha256'] = path.name, _sha256(path)
        _atomic_write(self.dir / META, strict_json(meta))
        keep = {path.name for path in files.values()}
        for old in self.dir.glob('checkpoint-e*'):
            if old.name not in keep:
                old.unlink(missing_ok=True)

    def load_checkpoint(self, net, trainer, *, devices, average=None):
        """Load the last committed epoch into ``net``, ``trainer`` and the
        running ``average`` of the parameters (if given).

        Returns
        -------
        int
            The epoch; :attr:`history` holds the records up to it.

        Raises
        ------
        RunError
            Naming the file: missing, truncated, replaced, or not fitting
            the model.
        """
        meta = _read_meta(self.dir / META)
        keys = ('params', 'states')
        if average is not None:
            if 'average' not in meta:
                raise RunError(f'{self.dir / META}: no parameter average '
                               'to resume --average-last with')
            keys += ('average',)
        for key in keys:
            path = self.dir / meta[key]
            if not path.is_file():
                raise RunError(f'{path}: missing')
            if _sha256(path) != meta[f'{key}_sha256']:
                raise RunError(f'{path}: checksum differs from '
                               f'{self.dir / META} (truncated or replaced)')
        _load(net.load_parameters, self.dir / meta['params'], 'model',
              ctx=devices)
        _load(trainer.load_states, self.dir / meta['states'], 'optimiser')
        if average is not None:
            with onp.load(self.dir / meta['average']) as arrays:
                try:
                    average.load_state(arrays, epoch=int(meta['epoch']))
                except ValueError as err:
                    raise RunError(f"{self.dir / meta['average']}: {err}"
                                   ) from None
        self.history = list(meta['history'])
        return int(meta['epoch'])


def _read_meta(path):
    if not path.is_file():
        raise RunError(f'{path}: no checkpoint to resume from (the run '
                       'stopped before its first epoch ended)')
    try:
        meta = json.loads(path.read_text())
        keys = ('epoch', 'history', 'params', 'states', 'params_sha256',
                'states_sha256')
        missing = [k for k in keys if k not in meta]
    except (ValueError, TypeError, AttributeError) as err:
        raise RunError(f'{path}: unreadable ({err})') from None
    if missing:
        raise RunError(f'{path}: unreadable (no {missing[0]!r})')
    return meta


def load_params(net, path, *, device):
    """Load ``path`` into ``net``; a RunError names an unfitting file."""
    _load(net.load_parameters, path, 'model', ctx=device)


def _load(load, path, what, **kwargs):
    """Call ``load(str(path))``; an unfitting file becomes a RunError."""
    try:
        load(str(path), **kwargs)
    except (MXNetError, AssertionError, ValueError, KeyError) as err:
        first = (str(err).strip().splitlines() or [''])[0][:200]
        raise RunError(f'{path}: does not fit this {what} ({first})'
                       ) from None


def _plot(history, path, loss_name):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    epochs = [r['epoch'] for r in history]
    has_loss = any('train_loss' in r for r in history)
    fig, axes = plt.subplots(1, 1 + has_loss,
                             figsize=(4 + 4 * has_loss, 3.2), squeeze=False)
    for key, label in [('hit_rate', 'test hit rate@50'),
                       ('hr@10', 'test hit rate@10'), ('auc', 'test AUC'),
                       ('valid_hit_rate', 'validation hit rate@50'),
                       ('valid_ndcg@10', 'validation NDCG@10')]:
        if any(key in r for r in history):
            axes[0, 0].plot(epochs, [r.get(key) for r in history],
                            marker='o', label=label)
    axes[0, 0].set(xlabel='epoch', ylim=(0, 1))
    axes[0, 0].legend()
    if has_loss:
        axes[0, 1].plot(epochs, [r.get('train_loss') for r in history],
                        marker='o', color='C3')
        axes[0, 1].set(xlabel='epoch', ylabel=f'train {loss_name} loss')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

