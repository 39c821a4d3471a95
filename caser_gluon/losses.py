"""Losses of the chapter's training section, and the paper's.

The chapter trains Caser with the Bayesian personalised ranking loss
(``d2l.BPRLoss``): for a positive item ``i`` and a negative ``j`` of the
same user and sequence, ``-log sigmoid(y_i - y_j)``. Here every loss takes
the scores of a batch as two matrices, the ``T`` targets and the ``N``
negatives of each window, and returns one value per window:

* ``bpr``: BPR over the pairs (target ``t``, negative ``t``), summed;
* ``hinge``: ``d2l.HingeLossbRec`` over the same pairs, summed;
* ``bce``: the paper's binary cross-entropy, every target against every
  negative, summed; ``bce-mean``: the same with the authors' reduction (a
  mean over the targets plus a mean over the negatives);
* ``sampled``: a sampled softmax: each target against the window's ``N``
  negatives, ``-log softmax``, summed over the targets;
* ``ce``: the full softmax cross-entropy over every item (RecBole's loss
  for Caser): the loop scores all items (``full_softmax`` is set on it).

All are written with ``softrelu`` (``log(1 + exp(x))``), which stays
finite for any margin, where ``log(sigmoid(x))`` underflows to ``-inf``.
"""
from mxnet import np, npx

__all__ = [
    'LOSSES',
    'bce_loss',
    'bce_mean_loss',
    'bpr_loss',
    'hinge_loss',
    'sampled_softmax_loss',
    'softmax_ce_loss',
]

npx.set_np()


def bpr_loss(positive, negative):
    """Per-pair BPR loss ``-log sigmoid(positive - negative)``.

    Written as ``softrelu(negative - positive)``: the same values as
    ``d2l.BPRLoss`` (which sums them over the batch) wherever the latter
    is finite, and finite everywhere.

    Parameters
    ----------
    positive, negative : (batch_size, ...) float

    Returns
    -------
    Loss of the inputs' (broadcast) shape.
    """
    return npx.activation(negative - positive, act_type='softrelu')


def hinge_loss(positive, negative, margin=1.0):
    """Per-pair hinge loss ``max(0, margin - positive + negative)``.

    ``d2l.HingeLossbRec`` per pair (d2l sums it over the batch).
    """
    return npx.relu(margin - positive + negative)


def bce_loss(positive, negative):
    """The paper's binary cross-entropy, summed over targets and negatives.

    ``-log sigmoid(p)`` for each positive and ``-log(1 - sigmoid(n))`` for
    each negative, written with ``softrelu`` to stay finite.

    Parameters
    ----------
    positive : (batch_size, T) float
    negative : (batch_size, N) float

    Returns
    -------
    (batch_size,) float
    """
    return (npx.activation(-positive, act_type='softrelu').sum(axis=1)
            + npx.activation(negative, act_type='softrelu').sum(axis=1))


def sampled_softmax_loss(positive, negative):
    """Each target against the window's sampled negatives, softmax.

    ``-log(exp(p_t) / (exp(p_t) + sum_j exp(n_j)))`` for each target
    ``t``, summed over the targets. The negatives are drawn uniformly
    among the items the user has not trained on, so no correction for the
    sampling distribution is needed.

    Parameters
    ----------
    positive : (batch_size, T) float
    negative : (batch_size, N) float

    Returns
    -------
    (batch_size,) float
    """
    T = positive.shape[1]
    negs = np.broadcast_to(np.expand_dims(negative, 1),
                           (negative.shape[0], T, negative.shape[1]))
    logits = np.concatenate([np.expand_dims(positive, 2), negs], axis=2)
    return -npx.log_softmax(logits, axis=2)[:, :, 0].sum(axis=1)


def softmax_ce_loss(logits, targets):
    """Full softmax cross-entropy: every item competes with the targets.

    Parameters
    ----------
    logits : (batch_size, num_items) float
        Scores of every item.
    targets : (batch_size, T) int

    Returns
    -------
    (batch_size,) float
        ``-sum_t log softmax(logits)[target_t]``.
    """
    log_p = npx.log_softmax(logits, axis=1)
    return -sum(npx.pick(log_p, targets[:, t], axis=1)
                for t in range(targets.shape[1]))


softmax_ce_loss.full_softmax = True


def bce_mean_loss(positive, negative):
    """:func:`bce_loss` with the authors' reduction, (batch_size,) float:
    a mean over the ``T`` targets plus a mean over the ``N`` negatives."""
    return (npx.activation(-positive, act_type='softrelu').mean(axis=1)
            + npx.activation(negative, act_type='softrelu').mean(axis=1))


def _pairwise(loss):
    """Pair target ``t`` with negative ``t``; sum over the ``T`` pairs."""
    def per_example(positive, negative):
        return loss(positive, negative).sum(axis=1)
    per_example.__doc__ = f'{loss.__name__}, summed over the T pairs.'
    return per_example


#: ``--loss`` name -> per-window loss of (positive (b, T), negative (b, N))
LOSSES = {'bpr': _pairwise(bpr_loss), 'hinge': _pairwise(hinge_loss),
          'bce': bce_loss, 'bce-mean': bce_mean_loss,
          'sampled': sampled_softmax_loss,
          'ce': softmax_ce_loss}
