"""Checkpoints of a training run: save each epoch, resume an interrupted run.

Not in the chapter, whose training was switched off. Each epoch writes, into
the run folder and atomically (a temporary file, then a rename):

* ``checkpoint.params``: the model's parameters;
* ``checkpoint.states``: the optimiser's state (Adam's moments and step);
* ``checkpoint.json``: the epoch reached, the metrics so far, and the
  SHA-256 of both files, so a truncated or swapped file is caught.

Resuming from epoch ``e`` reaches the same final metrics as an
uninterrupted run because the loop seeds its random streams per epoch
(``seed``, ``epoch``), not once per run.
"""
import hashlib
import json
import os
import pathlib

from mxnet.base import MXNetError

__all__ = ['CheckpointError', 'load_checkpoint', 'save_checkpoint']

PARAMS, STATES, META = 'checkpoint.params', 'checkpoint.states', \
    'checkpoint.json'


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or does not fit the model."""


def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def save_checkpoint(run_dir, net, trainer, *, epoch, history):
    """Write the checkpoint of ``epoch`` into ``run_dir``.

    Parameters
    ----------
    run_dir : path-like
    net : gluon.Block
    trainer : gluon.Trainer
    epoch : int
        The last complete epoch.
    history : list of dict
        The metrics of epochs ``1..epoch``.
    """
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp_params = run_dir / (PARAMS + '.tmp')
    tmp_states = run_dir / (STATES + '.tmp')
    net.save_parameters(str(tmp_params))
    trainer.save_states(str(tmp_states))
    meta = {'epoch': epoch, 'history': history,
            'params_sha256': _sha256(tmp_params),
            'states_sha256': _sha256(tmp_states)}
    tmp_meta = run_dir / (META + '.tmp')
    tmp_meta.write_text(json.dumps(meta, indent=2) + '\n')
    os.replace(tmp_params, run_dir / PARAMS)
    os.replace(tmp_states, run_dir / STATES)
    os.replace(tmp_meta, run_dir / META)


def load_checkpoint(run_dir, net, trainer, *, devices):
    """Load the checkpoint of ``run_dir`` into ``net`` and ``trainer``.

    Returns
    -------
    epoch : int
        The last complete epoch.
    history : list of dict

    Raises
    ------
    CheckpointError
        Naming the file: missing, truncated (checksum) or not matching the
        model's parameters.
    """
    run_dir = pathlib.Path(run_dir)
    meta_path = run_dir / META
    if not meta_path.is_file():
        raise CheckpointError(f'{meta_path}: no checkpoint to resume from')
    try:
        meta = json.loads(meta_path.read_text())
        epoch, history = int(meta['epoch']), list(meta['history'])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f'{meta_path}: unreadable ({err})') from None
    for name, key in [(PARAMS, 'params_sha256'), (STATES, 'states_sha256')]:
        path = run_dir / name
        if not path.is_file():
            raise CheckpointError(f'{path}: missing')
        if _sha256(path) != meta.get(key):
            raise CheckpointError(f'{path}: checksum differs from '
                                  f'{meta_path} (truncated or replaced)')
    try:
        net.load_parameters(str(run_dir / PARAMS), ctx=devices)
    except (MXNetError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise CheckpointError(f'{run_dir / PARAMS}: does not fit this '
                              f'model ({first})') from None
    try:
        trainer.load_states(str(run_dir / STATES))
    except (MXNetError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise CheckpointError(f'{run_dir / STATES}: does not fit this '
                              f'optimiser ({first})') from None
    return epoch, history
