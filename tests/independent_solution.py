"""A second correct solution of the graded functions, written apart from the reference and in another
style (einsum and explicit loops where the reference vectorises, other but equivalent formulas), for
the tests of the hidden checks (tests/test_hidden_checks.py): a correct submission that is not the
reference must pass them too. Staff only (it imports the graded modules, so the release leaves it out).

It has the graded names of asgn3.rnn_layers, asgn3.classifiers.rnn (CaptioningRNN) and
asgn3.image_gradients, so that the grader's jobs can import it in their place.
"""

from pathlib import Path

import numpy as np

from asgn3 import image_gradients as master_images
from asgn3.classifiers import rnn as master_rnn
from staff.markers import find_regions

# -- the recurrent layers -------------------------------------------------------------------------------


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(np.einsum("nd,dh->nh", x, Wx) + np.einsum("nk,kh->nh", prev_h, Wh) + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h * next_h)
    return (
        np.einsum("nh,dh->nd", da, Wx),
        np.einsum("nh,kh->nk", da, Wh),
        np.einsum("nd,nh->dh", x, da),
        np.einsum("nk,nh->kh", prev_h, da),
        np.einsum("nh->h", da),
    )


def rnn_forward(x, h0, Wx, Wh, b):
    steps, h = [], h0
    for t in range(x.shape[1]):
        h, cache = rnn_step_forward(x[:, t], h, Wx, Wh, b)
        steps.append((h, cache))
    return np.stack([h for h, _ in steps], axis=1), [cache for _, cache in steps]


def _sequence_backward(dh, caches, step_backward, carries):
    """Backpropagation through time; carries: how many recurrent states a step passes on (h, or h and c)."""
    N, T, H = dh.shape
    dx = [None] * T
    dcarry = [np.zeros((N, H)) for _ in range(carries)]
    dW = None
    for t in reversed(range(T)):
        upstream = [dh[:, t] + dcarry[0], *dcarry[1:]]
        grads = step_backward(*upstream, caches[t])
        dx[t], dcarry = grads[0], list(grads[1 : 1 + carries])
        step_dW = grads[1 + carries :]
        dW = step_dW if dW is None else [a + g for a, g in zip(dW, step_dW, strict=True)]
    return (np.stack(dx, axis=1), dcarry[0], *dW)


def rnn_backward(dh, cache):
    return _sequence_backward(dh, cache, rnn_step_backward, carries=1)


def word_embedding_forward(x, W):
    return np.take(W, x, axis=0), (x, W.shape)


def word_embedding_backward(dout, cache):
    x, shape = cache
    dW = np.zeros(shape)
    for word in np.unique(x):  # one vocabulary entry at a time
        dW[word] = dout[x == word].sum(axis=0)
    return dW


def temporal_affine_forward(x, w, b):
    return np.einsum("ntd,dm->ntm", x, w) + b, (x, w)


def temporal_affine_backward(dout, cache):
    x, w = cache
    return np.einsum("ntm,dm->ntd", dout, w), np.einsum("ntd,ntm->dm", x, dout), np.einsum("ntm->m", dout)


def temporal_softmax_loss(x, y, mask, verbose=False):
    N = x.shape[0]
    log_norm = np.logaddexp.reduce(x, axis=2, keepdims=True)
    log_probs = x - log_norm
    picked = np.take_along_axis(log_probs, y[..., None], axis=2)[..., 0]
    loss = -np.sum(np.where(mask, picked, 0.0)) / N
    one_hot = np.eye(x.shape[2])[y]
    dx = (np.exp(log_probs) - one_hot) * mask[..., None] / N
    return loss, dx


def sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + e^-x) = exp(-log(1 + e^-x))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    a = np.einsum("nd,dk->nk", x, Wx) + np.einsum("nh,hk->nk", prev_h, Wh) + b
    ai, af, ao, ag = np.split(a, 4, axis=1)
    i, f, o, g = sigmoid(ai), sigmoid(af), sigmoid(ao), np.tanh(ag)
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    da = np.concatenate(
        [
            dc * g * i * (1 - i),
            dc * prev_c * f * (1 - f),
            dnext_h * tanh_c * o * (1 - o),
            dc * i * (1 - g**2),
        ],
        axis=1,
    )
    return (
        np.einsum("nk,dk->nd", da, Wx),
        np.einsum("nk,hk->nh", da, Wh),
        dc * f,
        np.einsum("nd,nk->dk", x, da),
        np.einsum("nh,nk->hk", prev_h, da),
        np.einsum("nk->k", da),
    )


def lstm_forward(x, h0, Wx, Wh, b):
    h, c, hs, caches = h0, np.zeros_like(h0), [], []
    for t in range(x.shape[1]):
        h, c, cache = lstm_step_forward(x[:, t], h, c, Wx, Wh, b)
        hs.append(h)
        caches.append(cache)
    return np.stack(hs, axis=1), caches


def lstm_backward(dh, cache):
    return _sequence_backward(dh, cache, lstm_step_backward, carries=2)


# -- the captioning model ---------------------------------------------------------------------------------


class CaptioningRNN(master_rnn.CaptioningRNN):
    """The master's model (its constructor is infrastructure) with loss and sample written here."""

    def loss(self, features, captions):
        p, captions = self.params, np.asarray(captions)
        words_in, words_out = captions[:, :-1], captions[:, 1:]
        h0 = np.einsum("nd,dh->nh", features, p["W_proj"]) + p["b_proj"]
        x, embed_cache = word_embedding_forward(words_in, p["W_embed"])
        forward, backward = (
            (rnn_forward, rnn_backward) if self.cell_type == "rnn" else (lstm_forward, lstm_backward)
        )
        h, cell_cache = forward(x, h0, p["Wx"], p["Wh"], p["b"])
        scores, scores_cache = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
        loss, dscores = temporal_softmax_loss(scores, words_out, words_out != self._null)
        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, scores_cache)
        dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = backward(dh, cell_cache)
        grads["W_embed"] = word_embedding_backward(dx, embed_cache)
        grads["W_proj"] = np.einsum("nd,nh->dh", features, dh0)
        grads["b_proj"] = dh0.sum(axis=0)
        return loss, grads

    def sample(self, features, max_length=30, **unused):
        p = self.params
        N = features.shape[0]
        captions = np.full((N, max_length), self._null, dtype=np.int32)
        h = features @ p["W_proj"] + p["b_proj"]
        c = np.zeros_like(h)
        words = np.full(N, self._start)
        done = np.zeros(N, dtype=bool)
        for t in range(max_length):
            x = p["W_embed"][words]
            if self.cell_type == "rnn":
                h, _ = rnn_step_forward(x, h, p["Wx"], p["Wh"], p["b"])
            else:
                h, c, _ = lstm_step_forward(x, h, c, p["Wx"], p["Wh"], p["b"])
            words = np.argmax(h @ p["W_vocab"] + p["b_vocab"], axis=1)  # the argmax of the scores
            captions[:, t] = np.where(done, self._null, words)
            done |= words == self._end
            if done.all():
                break
        return captions


# -- image gradients --------------------------------------------------------------------------------------


def compute_saliency_maps(X, y, model):
    maps = []
    for image, label in zip(X, y, strict=True):  # one image at a time
        scores, cache = model.forward(image[None], mode="test")
        dscores = np.eye(scores.shape[1])[[label]]
        dX, _ = model.backward(dscores, cache)
        maps.append(np.abs(dX[0]).max(axis=0))
    return np.stack(maps)


def make_fooling_image(X, target_y, model, learning_rate=10.0, max_iterations=100):
    X_fooling = X.astype(model.dtype, copy=True)
    for _ in range(max_iterations):
        scores, cache = model.forward(X_fooling, mode="test")
        if np.argmax(scores[0]) == target_y:
            break
        dX, _ = model.backward(np.eye(scores.shape[1])[[target_y]], cache)
        X_fooling = X_fooling + learning_rate * dX / np.sqrt(np.sum(dX * dX))
    return X_fooling


# The image generators: the master's plumbing (noise, jitter, steps, blur, clipping) around a student's
# step is infrastructure, so an independent student's file is the master's with other regions: built
# here as the grader builds a submission's file, the three regions replaced by the code below.
_GENERATOR_STEPS = {
    2: """
scores, cache = model.forward(X, mode="test")
dX, _ = model.backward(np.eye(scores.shape[1])[[target_y]], cache)
X = X + learning_rate * dX - (2 * learning_rate * l2_reg) * X
""",
    3: """
feats, cache = model.forward(X, end=layer, mode="test")
dX = model.backward(2 * feats - 2 * target_feats, cache)[0] + (2 * l2_reg) * X
""",
    4: """
activations, cache = model.forward(X, end=layer, mode="test")
dX, _ = model.backward(activations, cache)
X = X + dX * (learning_rate / np.mean(np.abs(dX)))
""",
}


def _master_with_steps(steps):
    """The namespace of asgn3/image_gradients.py run with its regions {index: code} replaced."""
    source = Path(master_images.__file__).read_text()
    lines = source.splitlines()
    for index, region in reversed(list(enumerate(find_regions(source)))):
        if index in steps:
            body = [region.indent + line for line in steps[index].strip().splitlines()]
            lines[region.start + 1 : region.end] = body
    namespace = {"__name__": "independent_image_generators"}
    exec(compile("\n".join(lines), master_images.__file__, "exec"), namespace)
    return namespace


_generators = _master_with_steps(_GENERATOR_STEPS)
create_class_visualization = _generators["create_class_visualization"]
invert_features = _generators["invert_features"]
deepdream = _generators["deepdream"]
