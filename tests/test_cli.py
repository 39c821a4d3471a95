"""Tests of the ``caser-gluon`` command: help, flags, one-line errors."""
import dataclasses
import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import error_line, run_cli, write_ratings

from caser_gluon import launcher as launch_lib
from caser_gluon.config import DataConfig, ModelConfig, TrainConfig

#: flags of ``train`` that are not configuration fields
RUN_FLAGS = {'-h', '--help', '--out', '--overwrite', '--resume', '--quiet'}


def help_entries(text):
    """``{flag: its help text, whitespace collapsed}`` of argparse help."""
    entries, current = {}, None
    for line in text.splitlines():
        if line.startswith('  -'):
            current = []
            flags = [token.rstrip(',') for token in line.split('  ')[1]
                     .split() if token.startswith('-')]
            for flag in flags:
                entries[flag] = current
            current.append(line)
        elif line.startswith('   ') and current is not None:
            current.append(line)
        else:
            current = None
    return {flag: ' '.join(' '.join(lines).split())
            for flag, lines in entries.items()}


def test_train_help_shows_every_dataclass_default(capsys):
    assert run_cli(['train', '--help']) == 0
    entries = help_entries(capsys.readouterr().out)
    fields = [f for cls in (ModelConfig, DataConfig, TrainConfig)
              for f in dataclasses.fields(cls)]
    flags = set()
    for f in fields:
        flag = '--' + f.name.replace('_', '-')
        flags.add(flag)
        assert flag in entries, flag
        shown = re.findall(r'\(default: ([^()]*)\)', entries[flag])
        assert shown, (flag, entries[flag])
        if f.default is not None:     # None may be said in words
            assert shown[-1] == str(f.default), (flag, entries[flag])
        if f.type is bool:
            assert f'--no-{flag[2:]}' in entries
    negated = {f'--no-{f.name.replace("_", "-")}' for f in fields
               if f.type is bool}
    assert set(entries) == flags | negated | RUN_FLAGS


def test_installed_command_and_python_m_train_agree(capsys, monkeypatch):
    """``caser-gluon train`` and ``python -m caser_gluon.train`` are one."""
    command = shutil.which('caser-gluon', path=os.path.dirname(
        sys.executable)) or shutil.which('caser-gluon')
    assert command, 'caser-gluon is not installed'
    with open(command) as f:
        assert 'from caser_gluon.cli import main' in f.read()
    monkeypatch.setenv('COLUMNS', '100')
    assert run_cli(['train', '--help']) == 0
    here = capsys.readouterr().out
    there = subprocess.run(
        [sys.executable, '-m', 'caser_gluon.train', '--help'],
        capture_output=True, text=True, env=dict(os.environ), timeout=120,
        check=True).stdout
    assert there == here
    assert here.startswith('usage: caser-gluon train')


@pytest.fixture
def no_launch(monkeypatch):
    """``train-dist`` that would launch records instead (and its SIGTERM
    handler stays this process's)."""
    launched = []
    monkeypatch.setattr(launch_lib, 'launch',
                        lambda *a, **k: launched.append((a, k)) or 0)
    monkeypatch.setattr(launch_lib.signal, 'signal', lambda *a: None)
    return launched


BAD_VALUES = ['nan', 'inf', '0', '-1']
BAD_FLAGS = (
    [('train', [flag, v], flag) for flag in ('--lr', '--epochs',
                                             '--batch-size', '--L',
                                             '--num-factors',
                                             '--num-negatives',
                                             '--patience', '--targets')
     for v in BAD_VALUES]
    + [('train', [flag, v], flag) for flag, v in [
        ('--wd', 'nan'), ('--wd', 'inf'), ('--wd', '-1'),
        ('--drop-ratio', 'nan'), ('--drop-ratio', '1'),
        ('--drop-ratio', '-0.1'), ('--min-rating', 'nan'),
        ('--min-rating', 'inf'), ('--seed', '-1'), ('--k-core', '-1'),
        ('--num-workers', '-1'), ('--d', '-1'), ('--lr', 'fast'),
        ('--loss', 'mse'), ('--loop', 'slow')]]
    + [('experiments', ['--epochs', v], '--epochs') for v in BAD_VALUES]
    + [('experiments', ['--seeds', v], '--seeds') for v in ('nan', '-1')]
    + [('recommend', ['--run', 'r', '--user', '1', '-n', v], '-n')
       for v in BAD_VALUES]
    + [('train-dist', [flag, v], flag)
       for flag in ('--workers', '--servers', '--threads', '--timeout',
                    '--port') for v in BAD_VALUES]
    + [('train-dist', ['--port', '70000'], '--port')])


@pytest.mark.parametrize('command, argv, flag', BAD_FLAGS)
def test_bad_flag_values_exit_2_with_one_line(command, argv, flag, capsys,
                                              no_launch):
    assert run_cli([command, *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err     # no usage dump
    line = error_line(err, command)
    assert f'argument {flag}' in line
    assert line.count(flag) == 1        # the flag is named once
    assert no_launch == []


@pytest.mark.parametrize('argv, message', [
    (['--loss', 'hinge', '--num-negatives', '3'], 'must equal --targets'),
    (['--loop', 'd2l', '--loss', 'bce'], 'need --loop fast'),
    (['--k-core', '5'], 'need --ratings'),
    (['--loss', 'sampled'], 'needs --num-negatives'),
    (['--devices', 'tpu:1', '--epochs', '1'], 'not understood'),
    (['--resume', '/nonexistent/run'],
     '/nonexistent/run/config.json: missing'),
    (['--ratings', '/nonexistent/ratings.tsv', '--out', '{tmp}/run'],
     '/nonexistent/ratings.tsv: ratings file not found'),
    (['--ratings', '{tmp}/r.tsv', '--L', '11', '--out', '{tmp}/run'],
     '--L 11 is longer than the longest training history (9 items)'),
])
def test_usage_errors_are_one_line(argv, message, tmp_path, capsys):
    write_ratings(tmp_path / 'r.tsv')
    argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
    assert run_cli(['train', '--quiet', *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in error_line(err, 'train')
    assert not (tmp_path / 'run').exists()      # no empty run folder


def test_train_dist_passes_worker_flags(no_launch):
    assert run_cli(['train-dist', '--workers', '3', '--timeout', '5', '--',
                    '--epochs', '1', '--kvstore', 'dist_async']) == 0
    (args, kwargs), = no_launch
    assert args == (['--epochs', '1', '--kvstore', 'dist_async'],)
    assert kwargs['workers'] == 3 and kwargs['timeout'] == 5.0
    assert kwargs['kvstore'] == 'dist_async' and kwargs['servers'] == 1


def test_nonzero_launcher_code_is_the_exit_status(monkeypatch):
    monkeypatch.setattr(launch_lib, 'launch', lambda *a, **k: 3)
    monkeypatch.setattr(launch_lib.signal, 'signal', lambda *a: None)
    assert run_cli(['train-dist', '--', '--epochs', '1']) == 3
