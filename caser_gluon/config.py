"""Every setting of a run, and its default, written once.

Not a section of the chapter, which passes its settings as positional
arguments: here they are three dataclasses, in the order the data flows,

* :class:`ModelConfig`: the model and its sizes (``num_factors``, ``L``,
  ``d``, ``d_prime``, ...);
* :class:`DataConfig`: which ratings and how they are split into windows;
* :class:`TrainConfig`: the recipe (epochs, batch, optimiser, loss, loop,
  devices, seed).

Each field's default and help string live here and nowhere else: the
command line's flags are generated from the fields (``--num-factors`` from
``num_factors``), ``config.json`` is written from them and read back into
them. A flag the user did not give is left out of the parsed arguments,
so that presets and ``--resume`` can tell given flags from defaults.
"""
import argparse
import dataclasses
import json
import math
import pathlib
import typing

__all__ = [
    'ACTIVATIONS',
    'CONV_FORMS',
    'PRESETS',
    'ConfigError',
    'DataConfig',
    'ModelConfig',
    'RunConfig',
    'TrainConfig',
    'add_flags',
    'from_flat',
    'given_flags',
    'read_config_file',
    'to_flat',
    'with_preset',
]


class ConfigError(ValueError):
    """A configuration value or file that cannot be used."""


#: activations of Caser's layers (the authors' choices)
ACTIVATIONS = ('relu', 'tanh', 'sigmoid', 'identity')
#: ways to compute Caser's convolutions (``caser_gluon.model``)
CONV_FORMS = ('auto', 'fused', 'dense', 'conv2d')


def _field(default, help, *, check=None, choices=None):
    """A dataclass field whose metadata carries its flag's help and check."""
    return dataclasses.field(default=default, metadata={
        'help': help, 'check': check, 'choices': choices})


@dataclasses.dataclass
class ModelConfig:
    """The model: the chapter's ``Caser(num_factors, ..., L, d, d_prime)``."""

    model: str = _field('caser', 'the model', choices=(
        'caser', 'gru4rec', 'sasrec'))
    num_factors: int = _field(10, 'embedding size k', check='positive')
    L: int = _field(5, 'length of the input sequence', check='positive')
    d: int = _field(16, 'horizontal filters per height (0: none)',
                    check='non_negative')
    d_prime: int = _field(4, 'vertical filters (0: none)',
                          check='non_negative')
    drop_ratio: float = _field(0.05, 'dropout before the dense layer',
                               check='fraction')
    conv: str = _field('auto', "fused: the horizontal convolutions as one "
                       'compiled operator (built on first use; fastest on '
                       'a CPU); dense: convolutions as dense layers over '
                       "windows; conv2d: the chapter's Conv2D layers; auto: "
                       'fused if it builds and there is no GPU, else dense',
                       choices=CONV_FORMS)
    use_user: bool = _field(True, "join the user embedding p_u (--no-use-"
                            "user: the sequence only, an ablation)")
    use_seq: bool = _field(True, 'use the sequence (--no-use-seq: BPR-MF, '
                           'an ablation)')
    ac_conv: str = _field('relu', 'activation of the horizontal '
                          'convolutions (the authors\' -ac_conv)',
                          choices=ACTIVATIONS)
    ac_fc: str = _field('relu', 'activation of the dense layer (the '
                        'authors\' -ac_fc)', choices=ACTIVATIONS)
    dropout_on: str = _field('features', 'features: dropout on the '
                             "convolutions' features (the chapter, the "
                             'paper); image: once on the L x k image, '
                             'cheaper (dense form only)',
                             choices=('features', 'image'))
    init: str = _field('chapter', 'chapter: every parameter Normal(0.01); '
                       'paper: the authors\' (embeddings Normal(1/k), '
                       'output Normal(1/2k), zero bias, layers Gluon\'s '
                       'default); recbole: RecBole\'s (embeddings '
                       'Normal(1/k), dense layers Xavier-normal with zero '
                       'bias, convolutions as paper)',
                       choices=('chapter', 'paper', 'recbole'))
    output: str = _field('separate', "separate: score [z, p_u] with output "
                         "embeddings Q' and a bias (the chapter, the paper); "
                         'tied: a dense layer 2k -> k (ac_fc), then the '
                         "input embeddings Q, no bias (RecBole's Caser)",
                         choices=('separate', 'tied'))


@dataclasses.dataclass
class DataConfig:
    """Which ratings, and the windows cut from them."""

    data_dir: str | None = _field(
        None, 'folder with u.data (default: fetched to the cache)')
    ratings: str | None = _field(
        None, 'any "user item rating timestamp" file (tab, comma or ::) '
        'instead of ML-100K')
    min_rating: float | None = _field(
        None, 'with --ratings: keep ratings >= this', check='finite')
    k_core: int = _field(0, 'with --ratings: keep users and items with >= k '
                         'interactions', check='non_negative')
    targets: int = _field(1, 'T, next items predicted per window (the '
                          'paper)', check='positive')
    windows: str = _field('sliding', 'sliding: windows of L + T items, a '
                          'shorter history one padded window (the chapter); '
                          'prefixes: also the windows of the first items, '
                          "left-padded (every prefix, RecBole's)",
                          choices=('sliding', 'prefixes'))
    split: str = _field('last', "last: each user's latest item is the test "
                        'item (the chapter); last-valid: and the one before '
                        'validates; fraction: 70/10/20%% of each history in '
                        'time (the paper); files: --train-file, --test-file',
                        choices=('last', 'last-valid', 'fraction', 'files'))
    train_file: str | None = _field(
        None, 'with --split files: training lines "user item rating '
        '[timestamp]", in time order')
    valid_file: str | None = _field(
        None, 'with --split files: validation lines (optional)')
    test_file: str | None = _field(
        None, 'with --split files: test lines')


@dataclasses.dataclass
class TrainConfig:
    """The recipe: the chapter's is Adam, lr 0.04, batch 4096, 8 epochs."""

    epochs: int = _field(8, 'training epochs', check='positive')
    batch_size: int = _field(4096, 'examples per batch (over all devices)',
                             check='positive')
    lr: float = _field(0.04, 'learning rate', check='positive')
    wd: float = _field(1e-5, 'weight decay', check='non_negative')
    optimizer: str = _field('adam', 'gluon optimizer; torchadam: Adam with '
                            "PyTorch's epsilon (the authors')")
    lazy_update: str = _field(
        'auto', "embedding rows outside a batch keep their Adam moments "
        'and values (lazy Adam; adam or torchadam, one process): auto: '
        'in tables over 4 times the rows a batch looks up (the large '
        'catalogues); on: every table; off: dense updates',
        choices=('auto', 'on', 'off'))
    loss: str = _field('bpr', 'bpr (chapter), hinge (d2l.HingeLossbRec), '
                       'bce (paper), bce-mean (the authors\' reduction), '
                       'sampled (sampled softmax), ce (full '
                       'softmax, RecBole); fast loop only',
                       choices=('bpr', 'hinge', 'bce', 'bce-mean', 'sampled',
                                'ce'))
    num_negatives: int | None = _field(
        None, 'negatives per window (default: one per target)',
        check='positive')
    patience: int | None = _field(
        None, 'with a validation part: stop after this many epochs without '
        'a better validation NDCG@10 (default: never)', check='positive')
    average_last: int = _field(
        0, "the run's model is the mean of its parameters after each of the "
        'last N epochs (stochastic weight averaging); 0: the last epoch\'s',
        check='non_negative')
    loop: str = _field('fast', "fast: this package's loop; d2l: "
                       'd2l.train_ranking', choices=('fast', 'd2l'))
    evaluator: str = _field('all', 'all: rank every item; d2l: '
                            'd2l.evaluate_ranking (ranks item ids below '
                            'num_users only, slow)', choices=('all', 'd2l'))
    devices: str = _field('auto', 'auto, all, cpu, cpu:N or gpu:I,J')
    kvstore: str = _field('device', 'how gradients of several devices are '
                          'summed; dist_*: a parameter server (start with '
                          'caser-gluon train-dist)', choices=(
                              'device', 'local', 'dist_sync', 'dist_async'))
    num_workers: int = _field(0, 'DataLoader workers of the d2l loop',
                              check='non_negative')
    hybridize: bool = _field(True, 'compile the model (--no-hybridize: run '
                             'it imperatively)')
    seed: int = _field(0, 'fixes data order, negatives and initialisation',
                       check='non_negative')
    preset: str = _field('chapter', 'a named recipe (see PRESETS); given '
                         'flags override it', choices=('chapter', 'paper',
                                                       'best'))


@dataclasses.dataclass
class RunConfig:
    """A whole run: the three parts above."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def replace(self, **values):
        """A copy with some fields (by flat name) changed."""
        return from_flat({**to_flat(self), **values})


PARTS = {'model': ModelConfig, 'data': DataConfig, 'train': TrainConfig}


def to_flat(config):
    """``{field name: value}`` of a :class:`RunConfig` (names are unique)."""
    return {f.name: getattr(getattr(config, part), f.name)
            for part, cls in PARTS.items()
            for f in dataclasses.fields(cls)}


def from_flat(values, *, source='config'):
    """A :class:`RunConfig` from flat values; unknown keys are ignored.

    Raises
    ------
    ConfigError
        A value that fails its field's check, naming ``source``.
    """
    parts = {}
    for part, cls in PARTS.items():
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                kwargs[f.name] = _checked(f, values[f.name], source)
        parts[part] = cls(**kwargs)
    return RunConfig(**parts)


def _checked(f, value, source):
    """``value`` if it passes field ``f``'s check, else a ValueError."""
    meta, name = f.metadata, _flag(f.name)
    if value is None:
        if f.default is not None:
            raise ConfigError(f'{source}: {name} must not be null')
        return None
    kind = _base_type(f.type)
    if kind is float and isinstance(value, int) and not isinstance(
            value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool
                                       and isinstance(value, bool)):
        raise ConfigError(f'{source}: {name} must be of type {kind.__name__}, got '
                         f'{value!r}')
    if meta['choices'] and value not in meta['choices']:
        raise ConfigError(f'{source}: {name} must be one of '
                         f'{", ".join(meta["choices"])}, got {value!r}')
    problem = _CHECKS.get(meta['check'], lambda v: None)(value)
    if problem:
        raise ConfigError(f'{source}: {name} {problem}, got {value!r}')
    return value


_CHECKS = {
    'positive': lambda v: None if math.isfinite(v) and v > 0 else
    'must be > 0',
    'non_negative': lambda v: None if math.isfinite(v) and v >= 0 else
    'must be >= 0',
    'fraction': lambda v: None if 0 <= v < 1 else 'must be in [0, 1)',
    'finite': lambda v: None if math.isfinite(v) else 'must be finite',
}


def _base_type(annotation):
    """``int`` for ``Optional[int]`` and so on."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _flag(name):
    return '--' + name.replace('_', '-')


def _parse_as(f):
    """The argparse ``type=`` of field ``f``: parse, then check."""
    kind = _base_type(f.type)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'expected {"an integer" if kind is int else "a number"}, '
                f'got {text!r}') from None
        try:
            return _checked(f, value, 'flag')
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                str(err).split(f'{_flag(f.name)} ', 1)[-1]) from None
    parse.__name__ = kind.__name__
    return parse


def add_flags(parser, parts=PARTS):
    """Add a flag per field of ``parts`` to ``parser``.

    Defaults are *not* stored in the parsed arguments (a flag that was not
    given is absent, see :func:`given_flags`); the help shows them.
    """
    for part, cls in parts.items():
        title = cls.__doc__.split(':')[0].rstrip('.')
        group = parser.add_argument_group(f'{part}: {title}')
        for f in dataclasses.fields(cls):
            help_text = f.metadata['help']
            if '(default' not in help_text:
                help_text += f' (default: {f.default})'
            kwargs = {'dest': f.name, 'default': argparse.SUPPRESS,
                          'help': help_text}
            if f.type is bool:
                group.add_argument(_flag(f.name),
                                   action=argparse.BooleanOptionalAction,
                                   **kwargs)
                continue
            if f.metadata['choices']:
                kwargs['choices'] = f.metadata['choices']
            else:
                kwargs['type'] = _parse_as(f)
            group.add_argument(_flag(f.name), **kwargs)
    return parser


def given_flags(args):
    """The config fields the user gave on the command line, as a dict."""
    names = {f.name for cls in PARTS.values() for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


#: fields added after run folders were written: a ``config.json`` without
#: them is read with their defaults (what those runs did)
ADDED_LATER = ('output', 'windows', 'average_last')


def read_config_file(path):
    """The flat values saved in a run's ``config.json``, checked.

    Returns
    -------
    dict
        Every field of :class:`RunConfig` (those of ``ADDED_LATER`` filled
        with their defaults when missing) and whatever else was saved.

    Raises
    ------
    ConfigError
        Naming the file: missing, not JSON, a field missing or invalid.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f'{path}: missing; is {path.parent} a run folder?')
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f'{path}: not valid JSON ({err})') from None
    if not isinstance(saved, dict):
        raise ConfigError(f'{path}: not a run configuration')
    defaults = to_flat(RunConfig())
    for name in ADDED_LATER:       # older runs used the default
        saved.setdefault(name, defaults[name])
    missing = [k for k in defaults if k not in saved]
    if missing:
        raise ConfigError(f'{path}: no {missing[0]!r} (a damaged or foreign '
                          'config.json)')
    from_flat(saved, source=str(path))      # validates every field
    return saved


#: named recipes: the fields they change from the defaults above
PRESETS = {
    # the chapter's: Caser(10), L=5, BPR, Adam lr 0.04, batch 4096, 8 epochs
    'chapter': {},
    # the authors' train_caser.py defaults (caser_pytorch)
    # (their loss reduction, initialisation and PyTorch's Adam epsilon)
    'paper': {'num_factors': 50, 'd': 16, 'd_prime': 4, 'drop_ratio': 0.5,
              'ac_conv': 'relu', 'ac_fc': 'relu', 'init': 'paper',
              'targets': 3, 'loss': 'bce-mean', 'num_negatives': 3,
              'lr': 1e-3, 'wd': 1e-6, 'batch_size': 512, 'epochs': 50,
              'optimizer': 'torchadam'},
    # the best recipe found on validation data (each user's second-to-last
    # item held out; README): RecBole's Caser (tied output, its
    # initialisation, every prefix) with k=64, dropout 0.4, the full
    # softmax, PyTorch's Adam lr 1e-3, batch 2048, 40 epochs
    'best': {'num_factors': 64, 'd': 16, 'd_prime': 4, 'drop_ratio': 0.4,
             'ac_conv': 'relu', 'ac_fc': 'relu', 'init': 'recbole',
             'output': 'tied', 'windows': 'prefixes', 'targets': 1,
             'loss': 'ce', 'lr': 1e-3, 'wd': 1e-6, 'batch_size': 2048,
             'epochs': 40, 'optimizer': 'torchadam', 'average_last': 10},
}


def with_preset(values):
    """``values`` (flat, given) over the preset they name, over defaults.

    A given ``loss`` drops the preset's ``num_negatives`` (they go
    together) unless that is given too.
    """
    name = values.get('preset', TrainConfig.preset)
    preset = dict(PRESETS[name])
    if 'loss' in values and 'num_negatives' not in values:
        preset.pop('num_negatives', None)
    return {**preset, **values, 'preset': name}
