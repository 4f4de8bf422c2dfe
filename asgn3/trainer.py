"""One training loop for every model of the kit: minibatch gradient descent with callbacks.

Nothing in this file knows the model or the data (the idea of minGPT's trainer). The loop takes the next
minibatch from an iterator, calls the loss function on it and updates every parameter with its own copy
of the update rule's config. Everything that belongs to one task hangs on callbacks: learning-rate decay,
validation, keeping the best weights, checkpoints, progress output.

    trainer = Trainer(model, update_rule='adam', optim_config={'learning_rate': 1e-3})
    trainer.add_callback('on_epoch_end', decay_learning_rate(0.95))
    Progress(print_every=100).attach(trainer)
    trainer.run(batches, num_iterations=1000, iterations_per_epoch=100)

`batches` yields tuples of arguments of the loss function, e.g. (X_batch, y_batch). The callers:
asgn3.captioning_solver.CaptioningSolver (random caption minibatches, validation and checkpoints per epoch),
datasets/classifier_trainer.py (the training of the shipped CNN) and the grader's overfitting check.

Events; every callback is called as callback(trainer), in the order the callbacks were added:
- on_run_start: when run() begins (trainer.num_iterations is set)
- on_batch_end: after every update (trainer.iteration counts the updates, trainer.loss_history[-1] is the
  loss of the minibatch)
- on_epoch_end: after every iterations_per_epoch updates (trainer.epoch counts the epochs)
- on_run_end: when run() has done its iterations
"""

import numpy as np
from tqdm.auto import tqdm

from asgn3 import optim

UPDATE_RULES = ("sgd", "sgd_momentum", "rmsprop", "adam")
EVENTS = ("on_run_start", "on_batch_end", "on_epoch_end", "on_run_end")


class Trainer:
    """
    Minibatch gradient descent on model.params, with callbacks for everything else.

    Attributes: model, loss_fn, update_rule, optim_configs (one config dict per parameter, holding the
    rule's hyperparameters and state), iteration and epoch (counted since the trainer was made, so that
    a second run() continues the first), loss_history (one float per update), num_iterations and
    iterations_per_epoch (of the current run).
    """

    def __init__(self, model, update_rule="sgd", optim_config=None, loss_fn=None):
        """
        Inputs:
        - model: an object with `params`, a dict of arrays; every update replaces them by new arrays of
          the same dtype.
        - update_rule: name of a rule of asgn3.optim: 'sgd', 'sgd_momentum', 'rmsprop' or 'adam'.
        - optim_config: hyperparameters of the rule, e.g. {'learning_rate': 1e-3}; every parameter gets
          its own copy (the dict passed in is not changed).
        - loss_fn: f(*batch) -> (loss, grads), grads keyed like model.params; default model.loss.
        """
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"invalid update_rule {update_rule!r}: use one of {UPDATE_RULES}")
        self.model = model
        self.loss_fn = model.loss if loss_fn is None else loss_fn
        self.update_rule = update_rule
        self.optim_configs = {name: dict(optim_config or {}) for name in model.params}
        self.iteration = 0
        self.epoch = 0
        self.loss_history = []
        self.num_iterations = 0
        self.iterations_per_epoch = None
        self._callbacks = {event: [] for event in EVENTS}

    def add_callback(self, event, callback):
        """Call callback(trainer) on every `event` (one of EVENTS), after the callbacks added before it."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}: use one of {EVENTS}")
        self._callbacks[event].append(callback)

    def _trigger(self, event):
        for callback in self._callbacks[event]:
            callback(self)

    def step(self, batch):
        """
        One update: the loss and gradients of a minibatch, then every parameter moved by the rule.

        Inputs:
        - batch: tuple of the arguments of loss_fn.

        Returns the loss (float); it is also appended to loss_history.
        """
        loss, grads = self.loss_fn(*batch)
        if not np.isfinite(loss):
            rate = next(iter(self.optim_configs.values()), {}).get("learning_rate")
            raise FloatingPointError(
                f"loss became {loss} at iteration {self.iteration + 1}: lower the learning rate "
                f"(now {rate}), or check the loss function and its gradients"
            )
        update = getattr(optim, self.update_rule)
        for name, w in self.model.params.items():
            next_w, self.optim_configs[name] = update(w, grads[name], self.optim_configs[name])
            self.model.params[name] = next_w.astype(w.dtype, copy=False)
        self.loss_history.append(float(loss))
        return self.loss_history[-1]

    def run(self, batches, num_iterations, iterations_per_epoch=None):
        """
        Update until `num_iterations` updates are done in all (so a trainer restored to iteration k does
        the remaining num_iterations - k).

        Inputs:
        - batches: iterator of minibatches, each a tuple of the arguments of loss_fn.
        - num_iterations: the total number of updates to reach.
        - iterations_per_epoch: updates per epoch (on_epoch_end follows every multiple of it); None: no
          epochs.
        """
        if iterations_per_epoch is not None and iterations_per_epoch < 1:
            raise ValueError(f"iterations_per_epoch must be None or >= 1, got {iterations_per_epoch}")
        self.num_iterations = num_iterations
        self.iterations_per_epoch = iterations_per_epoch
        self._trigger("on_run_start")
        while self.iteration < num_iterations:
            self.step(next(batches))
            self.iteration += 1
            self._trigger("on_batch_end")
            if iterations_per_epoch is not None and self.iteration % iterations_per_epoch == 0:
                self.epoch += 1
                self._trigger("on_epoch_end")
        self._trigger("on_run_end")


def decay_learning_rate(factor):
    """A callback that multiplies the learning rate of every parameter's config by factor."""

    def decay(trainer):
        for config in trainer.optim_configs.values():
            if "learning_rate" in config:
                config["learning_rate"] *= factor

    return decay


def cosine_learning_rate(base_rate, num_iterations):
    """
    A callback (on_batch_end) that sets every parameter's learning rate on a cosine from base_rate down to 0
    over num_iterations updates (Loshchilov & Hutter 2017, without restarts):
    rate(t) = base_rate * (1 + cos(pi * t / num_iterations)) / 2 after update t.
    """

    def set_rate(trainer):
        progress = min(trainer.iteration / num_iterations, 1.0)
        rate = 0.5 * base_rate * (1.0 + np.cos(np.pi * progress))
        for config in trainer.optim_configs.values():
            config["learning_rate"] = rate

    return set_rate


class Progress:
    """
    Progress output as callbacks: a tqdm bar over the run showing the last loss, a line with the loss every
    print_every iterations, and write() for the other callbacks' lines (printed above the bar).
    With verbose=False nothing at all is shown.
    """

    def __init__(self, verbose=True, print_every=None, desc="training"):
        self.verbose = verbose
        self.print_every = print_every
        self.desc = desc
        self.bar = None

    def attach(self, trainer):
        """Add the callbacks to a trainer; returns self."""
        trainer.add_callback("on_run_start", self._open)
        trainer.add_callback("on_batch_end", self._update)
        trainer.add_callback("on_run_end", self._close)
        return self

    def write(self, text):
        """Print a line (above the bar while it is shown), unless verbose is False."""
        if self.verbose:
            (self.bar.write if self.bar is not None else print)(text)

    def _open(self, trainer):
        self.bar = tqdm(
            total=trainer.num_iterations, initial=trainer.iteration, disable=not self.verbose, desc=self.desc
        )

    def _update(self, trainer):
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{trainer.loss_history[-1]:.3f}", refresh=False)
        if self.print_every and (trainer.iteration - 1) % self.print_every == 0:
            loss = trainer.loss_history[-1]
            self.write(f"(Iteration {trainer.iteration} / {trainer.num_iterations}) loss: {loss:f}")

    def _close(self, trainer):
        self.bar.close()
        self.bar = None
