"""Train an image classifier with minibatch gradient descent, built from the kit's own pieces.

Usage (the model needs `params`, a dict of arrays, and a loss function; PretrainedCNN has both):

    from asgn3.classifier_trainer import ClassifierTrainer, random_flips
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
After every epoch the learning rate is multiplied by lr_decay and the accuracy on the validation set (or
on `max_val` of its examples, chosen once with the seed) is measured; at the end the model holds the
weights of the best epoch (its params and, when it has them, its batchnorm running statistics), which
`train` also returns. The histories are also kept as attributes of the trainer.
"""

import copy
import time

import numpy as np
from tqdm.auto import tqdm

from asgn3 import optim


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
        - lr_decay: factor applied to the learning rate after every epoch.
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
        loss_function = model.loss if loss_function is None else loss_function
        predict_fn = loss_function if predict_fn is None else predict_fn
        self._check_data(X, y, "X", "y")
        self._check_data(X_val, y_val, "X_val", "y_val")
        if not hasattr(optim, update_rule):
            raise ValueError(
                f"unknown update_rule {update_rule!r}: use a function of asgn3.optim such as "
                f"'sgd', 'sgd_momentum', 'rmsprop' or 'adam'"
            )
        update = getattr(optim, update_rule)
        dtype = next(iter(model.params.values())).dtype
        rng = np.random.default_rng(seed)
        base_config = {**(optim_config or {}), "learning_rate": learning_rate}
        configs = {name: dict(base_config) for name in model.params}

        X_val_used, y_val_used = X_val, y_val
        if max_val is not None and max_val < X_val.shape[0]:
            val_idx = np.sort(rng.choice(X_val.shape[0], max_val, replace=False))
            X_val_used, y_val_used = X_val[val_idx], y_val[val_idx]

        num_train = X.shape[0]
        iterations_per_epoch = max(num_train // batch_size, 1)
        self.loss_history, self.train_acc_history, self.val_acc_history = [], [], []
        best_val_acc, best_state = -1.0, None
        for epoch in range(1, num_epochs + 1):
            start_time = time.time()
            order = rng.permutation(num_train)
            steps = tqdm(
                range(iterations_per_epoch),
                desc=f"epoch {epoch}/{num_epochs}",
                disable=not verbose,
                leave=False,
            )
            for it in steps:
                batch = np.sort(order[it * batch_size : (it + 1) * batch_size])  # sorted: faster slicing
                X_batch = X[batch].astype(dtype, copy=False)
                if augment_fn is not None:
                    X_batch = augment_fn(X_batch, rng)
                loss, grads = loss_function(X_batch, y[batch])
                if not np.isfinite(loss):
                    rate = configs[next(iter(configs))]["learning_rate"]
                    raise FloatingPointError(
                        f"loss became {loss} at epoch {epoch}, iteration {it}: lower "
                        f"the learning rate (now {rate:g})"
                    )
                self.loss_history.append(float(loss))
                for name, w in model.params.items():
                    next_w, configs[name] = update(w, grads[name], configs[name])
                    model.params[name] = next_w.astype(w.dtype, copy=False)
                steps.set_postfix(loss=f"{loss:.3f}", refresh=False)
            for config in configs.values():
                config["learning_rate"] *= lr_decay

            sample = np.sort(rng.choice(num_train, min(max_train_acc, num_train), replace=False))
            train_acc = float(np.mean(predict(predict_fn, X[sample], eval_batch_size, dtype) == y[sample]))
            val_acc = float(np.mean(predict(predict_fn, X_val_used, eval_batch_size, dtype) == y_val_used))
            self.train_acc_history.append(train_acc)
            self.val_acc_history.append(val_acc)
            if val_acc > best_val_acc:
                best_val_acc, best_state = val_acc, self._snapshot(model)
            if verbose:
                epoch_loss = np.mean(self.loss_history[-iterations_per_epoch:])
                print(
                    f"epoch {epoch}/{num_epochs}: loss {epoch_loss:.4f}, "
                    f"train acc {train_acc:.3f}, val acc {val_acc:.3f} (on {len(y_val_used)}), "
                    f"{time.time() - start_time:.0f} s"
                )
            if epoch_callback is not None:
                epoch_callback(epoch, model, val_acc)

        if best_state is not None:
            self._restore(model, best_state)
        self.best_val_acc = best_val_acc
        self.optim_configs = configs
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
