"""Tests of caser_gluon.config: one place for defaults, checked values."""
import dataclasses
import json
import math

import pytest

from caser_gluon import cli
from caser_gluon import config as config_lib
from caser_gluon.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    from_flat,
    read_config_file,
    to_flat,
)

PARTS = (ModelConfig, DataConfig, TrainConfig)


def parse_train(argv):
    return cli.build_parser().parse_args(['train', *argv])


def test_flat_names_are_unique_and_round_trip():
    names = [f.name for cls in PARTS for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names))
    config = RunConfig()
    flat = to_flat(config)
    assert list(flat) == names
    assert from_flat(flat) == config
    changed = config.replace(lr=0.5, L=3, use_user=False, ratings='r.tsv')
    assert (changed.train.lr, changed.model.L, changed.model.use_user,
            changed.data.ratings) == (0.5, 3, False, 'r.tsv')
    assert config.train.lr == TrainConfig().lr      # a copy
    assert from_flat({'out': 'x', 'contexts': []}) == config  # ignored


def test_no_flag_means_every_default():
    args = parse_train([])
    assert config_lib.given_flags(args) == {}
    assert cli.resolve_config(args) == RunConfig()


def test_given_flags_are_typed_and_only_those_given():
    args = parse_train(['--lr', '0.1', '--no-use-user', '--L', '3',
                        '--loss', 'hinge', '--out', 'somewhere'])
    assert config_lib.given_flags(args) == {'lr': 0.1, 'use_user': False,
                                            'L': 3, 'loss': 'hinge'}
    config = cli.resolve_config(args)
    assert config == RunConfig().replace(lr=0.1, use_user=False, L=3,
                                         loss='hinge')


def test_presets_are_valid_and_given_flags_override_them():
    fields = set(to_flat(RunConfig()))
    for name, values in config_lib.PRESETS.items():
        assert set(values) <= fields, name
        config = cli.resolve_config(parse_train(['--preset', name]))
        flat = to_flat(config)
        assert {k: flat[k] for k in values} == values
        assert flat['preset'] == name
    config = cli.resolve_config(parse_train(['--preset', 'paper', '--lr',
                                             '0.01']))
    assert config.train.lr == 0.01
    assert config.model.num_factors == config_lib.PRESETS['paper'][
        'num_factors']


@pytest.mark.parametrize('values, message', [
    ({'lr': -1}, '--lr must be > 0, got -1.0'),
    ({'lr': math.nan}, '--lr must be > 0'),
    ({'lr': math.inf}, '--lr must be > 0'),
    ({'wd': math.inf}, '--wd must be >= 0'),
    ({'epochs': 0}, '--epochs must be > 0'),
    ({'epochs': 'eight'}, '--epochs must be of type int'),
    ({'epochs': 2.0}, '--epochs must be of type int'),
    ({'epochs': True}, '--epochs must be of type int'),
    ({'use_user': 1}, '--use-user must be of type bool'),
    ({'loss': 'mse'}, '--loss must be one of'),
    ({'L': None}, '--L must not be null'),
    ({'drop_ratio': 1.0}, '--drop-ratio must be in [0, 1)'),
    ({'drop_ratio': math.nan}, '--drop-ratio must be in [0, 1)'),
    ({'min_rating': math.nan}, '--min-rating must be finite'),
    ({'num_negatives': 0}, '--num-negatives must be > 0'),
])
def test_from_flat_names_source_and_key(values, message):
    with pytest.raises(ConfigError) as info:
        from_flat(values, source='saved/config.json')
    assert str(info.value).startswith('saved/config.json: ')
    assert message in str(info.value)
    with pytest.raises(ConfigError, match='^config: '):
        RunConfig().replace(**values)


def test_optional_fields_take_null():
    config = from_flat({'num_negatives': None, 'min_rating': None,
                        'ratings': None})
    assert config.train.num_negatives is None
    assert from_flat({'min_rating': 3}).data.min_rating == 3.0


def write_config(path, **changes):
    values = dict(to_flat(RunConfig()), out='run', contexts=['cpu(0)'])
    values.update(changes)
    path.write_text(json.dumps(values))
    return values


def test_read_config_file_returns_every_saved_value(tmp_path):
    path = tmp_path / 'config.json'
    values = write_config(path, lr=0.5)
    assert read_config_file(path) == values


@pytest.mark.parametrize('content, message', [
    (None, 'missing'),
    ('{"epochs": 2', 'not valid JSON'),
    ('[1, 2]', 'not a run configuration'),
    (b'\xff\xfe{}', 'not valid JSON'),
])
def test_read_config_file_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / 'config.json'
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(info.value).startswith(f'{path}: ')
    assert message in str(info.value)


def test_read_config_file_names_a_missing_key(tmp_path):
    path = tmp_path / 'config.json'
    values = write_config(path)
    del values['lr']
    path.write_text(json.dumps(values))
    with pytest.raises(ConfigError, match=f"^{path}: no 'lr'"):
        read_config_file(path)


@pytest.mark.parametrize('key, value, flag', [
    ('lr', -1, '--lr'), ('epochs', 'x', '--epochs'),
    ('loss', 'mse', '--loss'), ('L', None, '--L'),
])
def test_read_config_file_names_a_bad_value(tmp_path, key, value, flag):
    path = tmp_path / 'config.json'
    write_config(path, **{key: value})
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(info.value).startswith(f'{path}: {flag} ')


def test_nan_in_a_saved_config_is_refused(tmp_path):
    """``json`` reads NaN; the check refuses it, naming file and key."""
    path = tmp_path / 'config.json'
    write_config(path)
    path.write_text(path.read_text().replace('"lr": 0.04', '"lr": NaN'))
    with pytest.raises(ConfigError, match=f'^{path}: --lr must be > 0'):
        read_config_file(path)


def test_a_given_loss_drops_the_presets_negatives():
    from caser_gluon.config import with_preset
    assert with_preset({'preset': 'paper'})['num_negatives'] == 3
    values = with_preset({'preset': 'paper', 'loss': 'ce'})
    assert 'num_negatives' not in values and values['loss'] == 'ce'
    values = with_preset({'preset': 'paper', 'loss': 'bce',
                          'num_negatives': 5})
    assert values['num_negatives'] == 5


def test_runs_older_than_later_fields_read_with_defaults(tmp_path):
    flat = config_lib.to_flat(config_lib.RunConfig())
    for name in config_lib.ADDED_LATER:
        del flat[name]
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(flat))
    saved = config_lib.read_config_file(path)
    assert saved['output'] == 'separate' and saved['windows'] == 'sliding'
    assert saved['average_last'] == 0
