"""Caser's horizontal convolutions as one compiled MXNet operator.

Not in the chapter. The horizontal filters and their max-pooling over time
are two thirds of a training step with MXNet 1.9's own operators on a CPU
(``benchmarks/LAYOUTS.md``): fifteen dense layers over windows of the
image, ten element-wise maxima, each paying a fixed cost and a cost per
element that no other layout of them avoids. ``fused_horizontal.cc`` (next
to this file) computes all of it, forward and backward, in one pass over
each row: an MXNet extension library, compiled on first use with the C++
compiler of the machine and loaded with ``mx.library.load``. The model
uses it with ``conv='fused'`` (``'auto'``, the default: when it builds and
there is no GPU); without a compiler, ``'auto'`` is the same model as
``'dense'`` layers (:class:`~caser_gluon.model.DenseIntent`).

The library is kept in ``$XDG_CACHE_HOME/caser-gluon/ops/`` (``~/.cache``),
under a name that changes with its source, MXNet's version and the CPU's
instruction sets, so a copy is never used by another machine or version.
"""
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile

import mxnet as mx

__all__ = ['available', 'build', 'horizontal_max', 'library_path', 'load',
           'main', 'unavailable_reason']

SOURCE = pathlib.Path(__file__).with_name('fused_horizontal.cc')
FLAGS = ['-shared', '-fPIC', '-std=c++17', '-O3', '-march=native',
         '-fopenmp']
OP_NAME = 'caser_horizontal_max'

_state = {'loaded': None, 'reason': None}      # None: not tried yet


def _cpu_flags():
    """This CPU's instruction sets (``/proc/cpuinfo``), or '' elsewhere."""
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='replace') as f:
            return next((line for line in f if line.startswith('flags')), '')
    except OSError:
        return ''


def library_path():
    """Where the compiled library is (or will be) kept.

    Returns
    -------
    pathlib.Path
        ``<cache>/caser-gluon/ops/caser_fused-<key>.so``, the key a hash of
        the source, the flags, MXNet's version and the CPU's flags.
    """
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), ' '.join(FLAGS).encode(),
                 mx.__version__.encode(), _cpu_flags().encode()):
        key.update(part)
    cache = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
    return (pathlib.Path(cache) / 'caser-gluon' / 'ops'
            / f'caser_fused-{key.hexdigest()[:16]}.so')


def build(path=None):
    """Compile the library to ``path`` (default :func:`library_path`).

    The file appears whole or not at all (compiled to a temporary name,
    then renamed), so two processes building at once do not clash.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    RuntimeError
        Without a compiler or MXNet's ``lib_api`` sources, or if the
        compiler fails (its last lines in the message).
    """
    path = pathlib.Path(path or library_path())
    compiler = os.environ.get('CXX') or shutil.which('g++')
    mxnet_dir = pathlib.Path(mx.__file__).parent
    lib_api = mxnet_dir / 'src' / 'lib_api.cc'
    if compiler is None or not shutil.which(compiler):
        raise RuntimeError('no C++ compiler (g++, or $CXX) found')
    if not lib_api.exists():
        raise RuntimeError(f'MXNet has no {lib_api} to build against')
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        target = pathlib.Path(tmp) / path.name
        cmd = [compiler, *FLAGS, f'-I{mxnet_dir / "include"}', str(SOURCE),
               str(lib_api), '-o', str(target)]
        out = subprocess.run(cmd, capture_output=True, text=True,
                             check=False)
        if out.returncode:
            tail = ' '.join(out.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f'{compiler} failed: {tail}')
        os.replace(target, path)
    return path


def load():
    """Load the operator into MXNet once (building it if needed).

    Returns
    -------
    bool
        Whether ``caser_horizontal_max`` is available; if not,
        :func:`unavailable_reason` says why.
    """
    if _state['loaded'] is None:
        try:
            path = library_path()
            if not path.exists():
                build(path)
            mx.library.load(str(path), verbose=False)
            _state['loaded'] = hasattr(mx.nd, OP_NAME)
            if not _state['loaded']:
                _state['reason'] = f'{path} has no {OP_NAME}'
        except (OSError, RuntimeError, mx.base.MXNetError) as error:
            _state['loaded'], _state['reason'] = False, str(error)
    return _state['loaded']


def available():
    """Whether ``conv='auto'`` uses the fused operator here: it loads and
    MXNet sees no GPU (the operator runs on CPUs only)."""
    return mx.context.num_gpus() == 0 and load()


def unavailable_reason():
    """Why :func:`load` failed (``None`` if it did not, or was not tried)."""
    return _state['reason']


def horizontal_max(F, image, weights, biases):
    """Every height's filters over every window, max-pooled over time.

    Parameters
    ----------
    F : module
        ``mxnet.ndarray`` or ``mxnet.symbol`` (a ``hybrid_forward``'s).
    image : (batch_size, L * k) float32
        Numpy-style array or symbol.
    weights : list of (d, h * k) float32, h = 1..L
    biases : list of (d,) float32, h = 1..L

    Returns
    -------
    (batch_size, L * d) float32
        Column ``(h - 1) d + j``: ``max_t window_t . w_h[j] + b_h[j]``
        over the ``L - h + 1`` windows of ``h`` rows (the gradient goes to
        the first window reaching the maximum, as ``np.maximum``'s).
    """
    op = getattr(F, OP_NAME)
    parts = [image] + [p for pair in zip(weights, biases) for p in pair]
    pooled, _ = op(*[x.as_nd_ndarray() for x in parts], L=len(weights))
    return pooled.as_np_ndarray()


def main():
    """``python -m caser_gluon.fused`` (``make install``): build and load
    the operator now, say where it is or why not; exit 0 either way (the
    model then computes the same with MXNet's own operators)."""
    if load():
        print(f'caser-gluon: fused operator ready: {library_path()}')
    else:
        print(f'caser-gluon: no fused operator ({unavailable_reason()}); '
              f'the dense form is used instead')


if __name__ == '__main__':
    main()
