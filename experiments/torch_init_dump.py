"""The authors' initial Caser parameters for some seeds, as ``.npz`` files.

For ``VARIANT=torch-init python experiments/paper_variants.py``. Runs in
the peers' torch environment with a checkout of the authors' code
(``../shared/peers/README.md``)::

    /tmp/peers/tv/bin/python experiments/torch_init_dump.py \
        --repo /tmp/peers/caser_pytorch --out runs/torch-init 10 11 12

Each seed's parameters are those of their ``Caser`` built right after
their ``set_seed(seed)``, as ``train_caser.Recommender`` builds it in the
harness (943 users, 1,682 items and their padding item 0, the
``train_caser.py`` defaults); written to ``OUT/torchinit-s{seed}.npz``.
"""
import argparse
import pathlib
import sys

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('seeds', type=int, nargs='+')
    p.add_argument('--repo', default='/tmp/peers/caser_pytorch')
    p.add_argument('--out', default='.')
    args = p.parse_args(argv)
    sys.path.insert(0, args.repo)
    from caser import Caser
    from utils import set_seed
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_args = argparse.Namespace(L=5, d=50, nv=4, nh=16, drop=0.5,
                                    ac_conv='relu', ac_fc='relu')
    for seed in args.seeds:
        set_seed(seed, cuda=False)
        net = Caser(943, 1683, model_args)
        np.savez(out / f'torchinit-s{seed}.npz',
                 **{k: v.detach().numpy() for k, v in
                    net.state_dict().items()})
        print(out / f'torchinit-s{seed}.npz')


if __name__ == '__main__':
    main()
