"""caser_gluon: the D2L chapter "Sequence-aware Recommender Systems" (Caser).

Modules, in the chapter's order: ``data`` (ML-100K, the sequence-aware
split, ``SeqDataset``), ``model`` (``Caser``), ``train`` (BPR loss and the
training loops), ``evaluate`` (hit rate and AUC).
"""
import importlib

__all__ = ['Caser', 'SeqDataset', 'read_ml100k', 'split_seq_aware']
__version__ = '0.1.0'

_HOME = {'Caser': 'model', 'SeqDataset': 'data', 'read_ml100k': 'data',
         'split_seq_aware': 'data'}


def __getattr__(name):
    """Import ``Caser`` and friends lazily, so ``python -m`` stays clean."""
    if name in _HOME:
        module = importlib.import_module(f'{__name__}.{_HOME[name]}')
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
