"""caser_gluon: the D2L chapter "Sequence-aware Recommender Systems" (Caser).

Modules, in the order the data flows:

* ``config``: every setting and its default (model, data, recipe);
* ``data``: ML-100K, the sequence-aware split, ``SeqDataset`` (the
  chapter's data section); ``ratings``: any ratings file;
  ``interactions``: each user's items, compressed; ``prepare``: the data
  of a run, from its configuration;
* ``recommender``: the models' interface; ``model``: ``Caser`` (the
  chapter's model); ``session_models``: GRU4Rec and SASRec (the third
  exercise); ``zoo``: a model from its configuration;
* ``losses``: BPR (the chapter's), hinge, BCE; ``runtime``: devices and
  seeds; ``progress``: progress lines; ``train``: the training loops (the
  chapter's training section);
* ``metrics``: every ranking metric; ``evaluate``: hit rate, AUC and the
  rest, streamed over users (the chapter's evaluation);
* ``runs``: the run folder and checkpoints; ``distributed``: the
  parameter server; ``experiments``: the exercises over seeds;
  ``recommend``: top items of a run; ``cli``: the ``caser-gluon``
  command.
"""
import importlib

__all__ = ['Caser', 'SeqDataset', 'read_ml100k', 'split_seq_aware']
__version__ = '0.2.0'

_HOME = {'Caser': 'model', 'SeqDataset': 'data', 'read_ml100k': 'data',
         'split_seq_aware': 'data'}


def __getattr__(name):
    """Import ``Caser`` and friends lazily, so ``python -m`` stays clean."""
    if name in _HOME:
        module = importlib.import_module(f'{__name__}.{_HOME[name]}')
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
