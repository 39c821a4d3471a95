"""The ``caser-gluon`` command: train, recommend, run the experiments.

``caser-gluon train ...`` is ``python -m caser_gluon.train ...`` (the
chapter's training), ``caser-gluon experiments ...`` is ``python -m
caser_gluon.experiments ...``, and ``caser-gluon recommend`` prints what a
trained run recommends.
"""
import argparse
import sys

__all__ = ['main']


def _recommend_parser():
    p = argparse.ArgumentParser(
        prog='caser-gluon recommend',
        description='Top movies from a trained run, for a user or a '
                    'history. Ids are MovieLens ids (1-based).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--run', required=True,
                   help='run folder written by make train (config.json, '
                        'caser.params)')
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument('--user', type=int, default=None,
                     help='a user id (1-based)')
    who.add_argument('--items', default=None,
                     help='an ad-hoc history, comma-separated item ids, '
                          'oldest first (a cold user)')
    p.add_argument('-n', type=int, default=10, help='how many items')
    p.add_argument('--json', action='store_true',
                   help='print JSON instead of a table')
    return p


def main(argv=None):
    """Entry point of the ``caser-gluon`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = ['train', 'recommend', 'experiments']
    if not argv or argv[0] not in commands:
        print('usage: caser-gluon {train,recommend,experiments} ...\n'
              '  train        the chapter\'s training (see train --help)\n'
              '  recommend    top movies of a trained run\n'
              '  experiments  the chapter\'s exercises over seeds',
              file=sys.stderr)
        sys.exit(0 if argv[:1] in (['-h'], ['--help']) else 2)
    command, rest = argv[0], argv[1:]
    if command == 'train':
        from .train import main as train_main
        return train_main(rest)
    if command == 'experiments':
        from .experiments import main as experiments_main
        return experiments_main(rest)
    from . import recommend
    parser = _recommend_parser()
    args = parser.parse_args(rest)
    try:
        recommend.main(args)
    except ValueError as err:          # RecommendError, DataError
        parser.exit(2, f'{parser.prog}: error: {err}\n')


if __name__ == '__main__':
    main()
