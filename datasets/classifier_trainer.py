"""Train an image classifier with the kit's training loop (asgn3.trainer); it trained the shipped CNN.

Usage (the model needs `params`, a dict of arrays, and a loss function; PretrainedCNN has both):

    from datasets.classifier_trainer import ClassifierTrainer, random_flips
    from asgn3.classifiers.pretrained_cnn import PretrainedCNN

    model = PretrainedCNN(num_classes=10, num_filters=(16, 32, 64), filter_sizes=(5, 3, 3),
                          strides=(2, 2, 2), pads=(2, 1, 1), hidden_dim=128, seed=0)
    trainer = ClassifierTrainer()
    best_params, loss_history, train_acc_history, val_acc_history = trainer.train(
        X_train, y_train, X_val, y_val, model, model.loss,
        update_rule='adam', learning_rate=1e-3, lr_decay=0.95, batch_size=100, num_epochs=10,
        augment_fn=random_flips, max_val=2000, seed=0, verbose=True)
    model.save_weights('my_model.h5')

`loss_function(X_batch, y_batch)` returns `(loss, grads)` with grads keyed like model.params, and
`loss_function(X_batch)` returns class scores (N, C); for PretrainedCNN `model.loss` is both (train-mode
batchnorm for the loss, test mode for the scores). Each minibatch is sliced from X (no copy of the whole
set) and cast to the dtype of the model's parameters, so X may be float32 or even uint8 and large.
After every epoch the learning rate is multiplied by lr_decay (or, with lr_schedule='cosine', it follows a
cosine down to 0 over the run; weight_decay adds an L2 penalty on the weights) and the accuracy on the
validation set (or on `max_val` of its examples, chosen once with the seed) is measured; at the end the
model holds the weights of the best epoch (its params and, when it has them, its batchnorm running
statistics), which `train` also returns. The histories are also kept as attributes of the trainer. The
accuracies, the best epoch, the progress lines and the learning-rate schedule are callbacks of
asgn3.trainer.Trainer.
"""

import copy
import time

import numpy as np

from asgn3.trainer import Progress, Trainer, cosine_learning_rate, decay_learning_rate

LR_SCHEDULES = ("decay", "cosine")


def random_flips(X, rng):
    """
    Flip a random half of a minibatch of images left to right.

    Inputs:
    - X: images (N, C, H, W); not modified.
    - rng: numpy Generator.

    Returns the flipped minibatch (N, C, H, W).
    """
    flip = rng.random(X.shape[0]) < 0.5
    out = X.copy()
    out[flip] = X[flip, :, :, ::-1]
    return out


def shuffled_batches(X, y, batch_size, dtype, rng, augment_fn=None):
    """
    Minibatches of every epoch in a new random order, forever (the last N % batch_size examples of each
    order are left out).

    Inputs:
    - X, y: inputs (N, ...) and labels (N,); each batch is sliced from X (no copy of the whole set).
    - batch_size: examples per batch.
    - dtype: type each batch of X is cast to.
    - rng: numpy Generator of the orders and the augmentation.
    - augment_fn: optional f(X_batch, rng) -> X_batch.

    Yields tuples (X_batch (batch_size, ...) of dtype, y_batch (batch_size,)).
    """
    per_epoch = max(X.shape[0] // batch_size, 1)
    while True:
        order = rng.permutation(X.shape[0])
        for it in range(per_epoch):
            batch = np.sort(order[it * batch_size : (it + 1) * batch_size])  # sorted: faster slicing
            X_batch = X[batch].astype(dtype, copy=False)
            if augment_fn is not None:
                X_batch = augment_fn(X_batch, rng)
            yield X_batch, y[batch]


def smoothed_softmax_loss(scores, y, smoothing):
    """
    Softmax loss against smoothed labels (Szegedy et al. 2016): the target of example i puts
    1 - smoothing + smoothing / C on class y[i] and smoothing / C on every other class.

    Inputs:
    - scores: class scores (N, C).
    - y: integer labels (N,), each in [0, C).
    - smoothing: the share of the target spread evenly over the C classes, in [0, 1); 0 is the plain
      softmax loss.

    Returns a tuple of:
    - loss: the mean cross-entropy between the targets and the softmax of the scores (float).
    - dscores: its gradient with respect to scores (N, C).
    """
    N, C = scores.shape
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    targets = np.full(scores.shape, smoothing / C, dtype=scores.dtype)
    targets[np.arange(N), y] += 1.0 - smoothing
    loss = -np.sum(targets * log_probs) / N
    dscores = (np.exp(log_probs) - targets) / N
    return float(loss), dscores


def label_smoothing_loss(model, smoothing):
    """
    A loss function like PretrainedCNN.loss whose training loss uses smoothed labels.

    Inputs:
    - model: object with forward(X, mode) -> (scores, cache) and backward(dscores, cache) -> (dX, grads),
      like PretrainedCNN.
    - smoothing: see smoothed_softmax_loss.

    Returns f(X, y=None): the test-mode scores (N, C) when y is None, else (loss, grads) of a train-mode
    pass with smoothed labels.
    """

    def loss(X, y=None):
        if y is None:
            return model.forward(X, mode="test")[0]
        scores, cache = model.forward(X, mode="train")
        data_loss, dscores = smoothed_softmax_loss(scores, y, smoothing)
        return data_loss, model.backward(dscores, cache)[1]

    return loss


def with_weight_decay(loss_function, model, weight_decay):
    """
    A loss function with an L2 penalty 0.5 * weight_decay * sum(W ** 2) on every weight matrix or filter
    bank of model.params (the arrays of two or more dimensions; biases, gammas and betas are left free).

    Inputs:
    - loss_function: f(X, y=None) -> scores, or (loss, grads) keyed like model.params.
    - model: the object whose params the penalty reads at each call (the trainer replaces the arrays).
    - weight_decay: the penalty's factor (>= 0).

    Returns f(X, y=None) with the penalty added to the loss and weight_decay * W to the gradients.
    """

    def loss(X, y=None):
        if y is None:
            return loss_function(X)
        data_loss, grads = loss_function(X, y)
        for name, w in model.params.items():
            if w.ndim >= 2:
                data_loss += 0.5 * weight_decay * float(np.vdot(w, w))
                grads[name] = grads[name] + weight_decay * w
        return data_loss, grads

    return loss


def predict(predict_fn, X, batch_size=100, dtype=np.float32):
    """
    Predicted labels of X, computed batch by batch.

    Inputs:
    - predict_fn: function mapping a batch (B, ...) to class scores (B, C).
    - X: inputs (N, ...).
    - batch_size: examples per call of predict_fn.
    - dtype: type each batch is cast to.

    Returns integer labels (N,).
    """
    labels = [
        np.argmax(predict_fn(X[i : i + batch_size].astype(dtype, copy=False)), axis=1)
        for i in range(0, X.shape[0], batch_size)
    ]
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def accuracy(predict_fn, X, y, batch_size=100, dtype=np.float32):
    """The share (float) of the examples of X whose predicted label is their label y."""
    return float(np.mean(predict(predict_fn, X, batch_size, dtype) == y))


class ClassifierTrainer:
    """Minibatch training of a classifier: see the module docstring for the whole recipe."""

    def train(
        self,
        X,
        y,
        X_val,
        y_val,
        model,
        loss_function=None,
        update_rule="adam",
        learning_rate=1e-3,
        optim_config=None,
        lr_decay=0.95,
        lr_schedule="decay",
        weight_decay=0.0,
        batch_size=100,
        num_epochs=10,
        augment_fn=None,
        predict_fn=None,
        max_val=None,
        max_train_acc=1000,
        eval_batch_size=100,
        epoch_callback=None,
        seed=0,
        verbose=True,
    ):
        """
        Train model.params with minibatch updates and keep the weights of the best epoch.

        Inputs:
        - X, y: training inputs (N, ...) and integer labels (N,).
        - X_val, y_val: validation inputs (N_val, ...) and labels (N_val,).
        - model: object with `params`, a dict of arrays (updated in place); optional `bn_params`, saved
          with the best weights.
        - loss_function: f(X_batch, y_batch) -> (loss, grads); default model.loss.
        - update_rule: name of a rule in asgn3.optim ('sgd', 'sgd_momentum', 'rmsprop', 'adam').
        - learning_rate: initial learning rate.
        - optim_config: extra hyperparameters of the update rule (each parameter gets its own copy).
        - lr_decay: factor applied to the learning rate after every epoch (lr_schedule 'decay').
        - lr_schedule: 'decay' (times lr_decay after every epoch) or 'cosine' (from learning_rate down to
          0 over all the updates of the run, asgn3.trainer.cosine_learning_rate).
        - weight_decay: L2 penalty on the weight arrays of model.params (with_weight_decay); 0 for none.
        - batch_size, num_epochs: minibatch size and number of passes over the data.
        - augment_fn: optional f(X_batch, rng) -> X_batch applied to training batches (random_flips).
        - predict_fn: f(X_batch) -> scores (B, C); default loss_function(X_batch).
        - max_val: measure validation accuracy on at most this many examples (None: all of them).
        - max_train_acc: training accuracy is measured on this many random training examples.
        - eval_batch_size: batch size of the accuracy computations.
        - epoch_callback: optional f(epoch, model, val_acc) called after every epoch (e.g. to save).
        - seed: seed of the shuffling, the subsets and the augmentation.
        - verbose: show a progress bar and print a line per epoch.

        Returns a tuple of:
        - best_params: dict of the parameters of the epoch with the best validation accuracy.
        - loss_history: list of the minibatch losses.
        - train_acc_history, val_acc_history: lists with one accuracy per epoch.
        """
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}; got {lr_schedule!r}")
        loss_function = model.loss if loss_function is None else loss_function
        predict_fn = loss_function if predict_fn is None else predict_fn
        if weight_decay > 0:
            loss_function = with_weight_decay(loss_function, model, weight_decay)
        self._check_data(X, y, "X", "y")
        self._check_data(X_val, y_val, "X_val", "y_val")
        dtype = next(iter(model.params.values())).dtype
        rng = np.random.default_rng(seed)
        config = {**(optim_config or {}), "learning_rate": learning_rate}
        trainer = Trainer(model, update_rule, config, loss_fn=loss_function)

        X_val_used, y_val_used = X_val, y_val
        if max_val is not None and max_val < X_val.shape[0]:
            val_idx = np.sort(rng.choice(X_val.shape[0], max_val, replace=False))
            X_val_used, y_val_used = X_val[val_idx], y_val[val_idx]

        iterations_per_epoch = max(X.shape[0] // batch_size, 1)
        self.train_acc_history, self.val_acc_history = [], []
        self.best_val_acc, self._best_state = -1.0, None
        progress = Progress(verbose, desc="training")
        epoch_started = [time.time()]

        def measure_and_keep_the_best(trainer):
            sample = np.sort(rng.choice(X.shape[0], min(max_train_acc, X.shape[0]), replace=False))
            self.train_acc_history.append(accuracy(predict_fn, X[sample], y[sample], eval_batch_size, dtype))
            self.val_acc_history.append(accuracy(predict_fn, X_val_used, y_val_used, eval_batch_size, dtype))
            if self.val_acc_history[-1] > self.best_val_acc:
                self.best_val_acc, self._best_state = self.val_acc_history[-1], self._snapshot(model)

        def report(trainer):
            progress.write(
                f"epoch {trainer.epoch}/{num_epochs}: "
                f"loss {np.mean(trainer.loss_history[-iterations_per_epoch:]):.4f}, "
                f"train acc {self.train_acc_history[-1]:.3f}, val acc {self.val_acc_history[-1]:.3f} "
                f"(on {len(y_val_used)}), {time.time() - epoch_started[0]:.0f} s"
            )
            epoch_started[0] = time.time()
            if epoch_callback is not None:
                epoch_callback(trainer.epoch, model, self.val_acc_history[-1])

        num_iterations = num_epochs * iterations_per_epoch
        if lr_schedule == "cosine":
            trainer.add_callback("on_batch_end", cosine_learning_rate(learning_rate, num_iterations))
        else:
            trainer.add_callback("on_epoch_end", decay_learning_rate(lr_decay))
        trainer.add_callback("on_epoch_end", measure_and_keep_the_best)
        trainer.add_callback("on_epoch_end", report)
        progress.attach(trainer)
        batches = shuffled_batches(X, y, batch_size, dtype, rng, augment_fn)
        trainer.run(batches, num_iterations, iterations_per_epoch)

        if self._best_state is not None:
            self._restore(model, self._best_state)
        self.loss_history = trainer.loss_history
        self.optim_configs = trainer.optim_configs
        self.best_params = model.params
        return model.params, self.loss_history, self.train_acc_history, self.val_acc_history

    @staticmethod
    def _check_data(X, y, x_name, y_name):
        """Inputs and labels must have the same number of examples."""
        if X.shape[0] != np.shape(y)[0] or X.shape[0] == 0:
            raise ValueError(
                f"{x_name} and {y_name} must hold the same number (> 0) of examples; got "
                f"{x_name} {X.shape} and {y_name} {np.shape(y)}"
            )

    @staticmethod
    def _snapshot(model):
        """Copy of the model's weights: params, plus batchnorm statistics when it has them."""
        return copy.deepcopy(model.params), copy.deepcopy(getattr(model, "bn_params", None))

    @staticmethod
    def _restore(model, state):
        """Put a snapshot back into the model."""
        params, bn_params = state
        model.params = params
        if bn_params is not None:
            model.bn_params = bn_params
