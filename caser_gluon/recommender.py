"""The interface every sequential recommender of this package implements.

Not a section of the chapter: the chapter has one model. Caser, and the
session-based models of the third exercise, share one small interface, so
that the training loop, the evaluator and ``recommend`` serve all of them
unchanged (RecBole's ``calculate_loss`` / ``predict`` /
``full_sort_predict`` is the model followed):

* :meth:`SequentialRecommender.encode` turns a batch of contexts (a user
  and the last ``L`` items) into one vector each, ``x`` of ``width``
  values;
* an item is scored as ``x . Q'_i + b_i`` with the output embeddings
  ``Q_prime`` (``num_items x width``) and ``b`` (``num_items x 1``):
  :meth:`~SequentialRecommender.hybrid_forward` scores given items (what
  the loop trains), :meth:`~SequentialRecommender.score_all` scores every
  item for a batch of contexts (what the evaluator and ``recommend`` use);
* a model whose dropout masks may be given as inputs lists their widths in
  ``mask_widths`` and draws them with ``draw_masks``; the training loop
  then scores through :class:`MaskedScores`.

Item id ``num_items`` is the padding id of a context shorter than ``L``;
input-side item embeddings keep a row for it, the output side does not.
"""
from mxnet import ndarray, npx
from mxnet.gluon import nn

__all__ = ['MaskedScores', 'SequentialRecommender']

npx.set_np()


class SequentialRecommender(nn.HybridBlock):
    """Base of the models: encode a context once, score items against it.

    Subclasses set ``self.L``, ``self.num_items`` and ``self.width`` and
    create the output embeddings with :meth:`_init_output`, then implement
    :meth:`encode`.
    """

    def _init_output(self, num_items, width):
        """The output side: ``Q_prime`` (num_items, width) and ``b``."""
        self.num_items, self.width = num_items, width
        self.Q_prime = nn.Embedding(num_items, width)
        self.b = nn.Embedding(num_items, 1)

    @property
    def pad(self):
        """The padding item id, ``num_items``."""
        return self.num_items

    def encode(self, F, user_id, seq):
        """Context vectors.

        Parameters
        ----------
        F : module
            ``mxnet.symbol`` or ``mxnet.ndarray`` (hybridized or not).
        user_id : (batch_size,) int
        seq : (batch_size, L) int
            The last ``L`` items, oldest first, left-padded with ``pad``.

        Returns
        -------
        (batch_size, width) float
        """
        raise NotImplementedError

    def row_tables(self):
        """The embedding tables, by the batch input holding their row ids.

        Returns
        -------
        dict of str to list of Parameter
            ``'users'``: ``P`` (if any); ``'seqs'``: ``Q`` (if any);
            ``'items'``: ``Q_prime`` and ``b``.
        """
        tables = {'users': ['P'], 'seqs': ['Q'], 'items': ['Q_prime', 'b']}
        return {key: [getattr(self, n).weight for n in names
                      if getattr(self, n, None) is not None]
                for key, names in tables.items()}

    #: widths of the dropout masks :meth:`encode` takes as inputs (none:
    #: the model's own ``Dropout`` draws them); see :class:`MaskedScores`
    mask_widths = ()

    def draw_masks(self, rng, batch_size):
        """Dropout masks of :attr:`mask_widths` for a batch (NumPy)."""
        return []

    def hybrid_forward(self, F, user_id, seq, item_id):
        """Score items for each context.

        Parameters
        ----------
        user_id : (batch_size,) int
        seq : (batch_size, L) int
        item_id : (batch_size,) or (batch_size, K) int
            One item per row (the chapter's call), or ``K`` items per row,
            e.g. the targets and the negatives, scored in one pass over
            the context.

        Returns
        -------
        Scores of ``item_id``'s shape: (batch_size,) or (batch_size, K).
        """
        return self.score_items(F, self.encode(F, user_id, seq), item_id)

    def score_items(self, F, x, item_id):
        """Scores ``x . Q'_i + b_i`` of ``item_id`` for context vectors ``x``
        (batch_size, width); shapes as in :meth:`hybrid_forward`."""
        items = F.npx.reshape(item_id, (-2, -1))             # (b, K)
        q = self.Q_prime(items)                              # (b, K, w)
        bias = F.npx.reshape(self.b(items), (-2, -2))        # (b, K)
        scores = F.npx.batch_dot(q, F.np.expand_dims(x, 2))  # (b, K, 1)
        scores = F.npx.reshape(scores, (-2, -2)) + bias
        return F.npx.reshape_like(scores, item_id)

    def user_vectors(self, user_id, seq):
        """:meth:`encode` run imperatively: (batch_size, width) vectors."""
        return self.encode(ndarray, user_id, seq)

    def score_all(self, user_id, seq):
        """Scores of every item for a batch of contexts.

        Call it under ``autograd.predict_mode()`` for evaluation (no
        dropout).

        Parameters
        ----------
        user_id : (batch_size,) int mxnet array
        seq : (batch_size, L) int mxnet array

        Returns
        -------
        (batch_size, num_items) float32 mxnet array, on ``seq``'s device.
        """
        x = self.user_vectors(user_id, seq)                  # (b, w)
        ctx = seq.ctx
        q = self.Q_prime.weight.data(ctx)                    # (n, w)
        bias = self.b.weight.data(ctx)                       # (n, 1)
        return ndarray.np.dot(x, q.T) + bias.T


class MaskedScores(nn.HybridBlock):
    """A model's scores with its dropout masks as inputs (training).

    ``MaskedScores(net)(user_id, seq, item_id, *masks)`` is ``net(user_id,
    seq, item_id)`` with the masks of ``net.mask_widths`` (e.g. from
    ``net.draw_masks``) in place of MXNet's ``Dropout``. It is a block of
    its own, hybridized on its own, so that ``net`` keeps the chapter's
    call for everything else (d2l's loop and evaluator, prediction).
    """

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, user_id, seq, item_id, *masks):
        x = self.net.encode(F, user_id, seq, masks=masks)
        return self.net.score_items(F, x, item_id)
