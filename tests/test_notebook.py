"""The chapter's notebook: kept in sync with its text twin, and it runs.

``notebooks/caser.ipynb`` is committed without outputs and paired with
``notebooks/caser.py`` (jupytext ``py:percent``). The slow test executes it
top to bottom with its parameters cell overridden to a tiny configuration.
"""
import json
import pathlib
import sys

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / 'notebooks'
IPYNB = NOTEBOOKS / 'caser.ipynb'
PAIR = NOTEBOOKS / 'caser.py'

#: overrides of the ``parameters`` cell: one epoch everywhere
SMALL = {'EPOCHS': 1, 'EXERCISE_EPOCHS': 1, 'SEEDS': [0],
         'EXERCISE_LS': [3]}


def _cells(path):
    """``(cell_type, source)`` of each cell, as jupytext reads ``path``."""
    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_pair_has_the_same_cells():
    ipynb, py = _cells(IPYNB), _cells(PAIR)
    assert len(ipynb) == len(py)
    for i, (a, b) in enumerate(zip(ipynb, py)):
        assert a == b, f'cell {i} differs; run jupytext --sync on {PAIR}'


def test_pair_is_configured():
    nb = nbformat.read(IPYNB, as_version=4)
    assert nb.metadata['jupytext']['formats'] == 'ipynb,py:percent'
    assert nb.metadata['kernelspec']['name'] == 'python3'


def test_committed_without_outputs():
    nb = nbformat.read(IPYNB, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == 'code':
            assert not cell.outputs, f'cell {i} has outputs'
            assert cell.execution_count is None, f'cell {i} was run'


def test_one_parameters_cell():
    nb = nbformat.read(IPYNB, as_version=4)
    tagged = [c for c in nb.cells if 'parameters' in c.metadata.get(
        'tags', [])]
    assert len(tagged) == 1
    for name in SMALL:
        assert f'\n{name} = ' in '\n' + tagged[0].source, name


def _small_notebook():
    """The notebook with ``SMALL`` appended to its parameters cell."""
    nb = nbformat.read(IPYNB, as_version=4)
    cell = next(c for c in nb.cells
                if 'parameters' in c.metadata.get('tags', []))
    cell.source += '\n# overridden by tests/test_notebook.py\n' + '\n'.join(
        f'{name} = {value!r}' for name, value in SMALL.items())
    return nb


def _kernel_on_this_python(tmp_path, monkeypatch):
    """A kernelspec running ``sys.executable``, found before any other.

    ``ipykernel`` installs a ``python3`` spec into the venv, whose
    ``python`` jupyter_client replaces by ``sys.executable``; a user-wide
    ``python3`` spec would still win over it, so the test brings its own.
    """
    spec = tmp_path / 'jupyter' / 'kernels' / 'caser-test'
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f',
                 '{connection_file}'],
        'display_name': 'caser-gluon tests', 'language': 'python'}))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
    monkeypatch.delenv('MPLBACKEND', raising=False)   # keep inline plots
    return 'caser-test'


def _outputs(nb):
    """All text and the MIME types of all outputs of ``nb``."""
    text, mimes = [], set()
    for cell in nb.cells:
        for out in cell.get('outputs', []):
            text.append(out.get('text', ''))
            data = out.get('data', {})
            text.append(data.get('text/plain', ''))
            mimes.update(data)
    return '\n'.join(text), mimes


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
    nb = _small_notebook()
    client = NotebookClient(
        nb, kernel_name=_kernel_on_this_python(tmp_path, monkeypatch),
        timeout=600, resources={'metadata': {'path': str(NOTEBOOKS)}})
    client.execute()
    text, mimes = _outputs(nb)
    assert 'number of windows: 3' in text
    assert 'conv_h[4] (height 5) (4, 16, 1, 1)' in text
    assert 'hit rate@50' in text
    assert 'both, L=3' in text
    assert 'image/png' in mimes
