"""CaptioningSolver: train a captioning model with minibatch gradient descent.

Usage (the classic kit's interface, plus the extras a real trainer has):

    data = load_coco_data(max_train=10000)
    model = CaptioningRNN(data['word_to_idx'], input_dim=data['train_features'].shape[1],
                          hidden_dim=512, wordvec_dim=256, cell_type='lstm')
    solver = CaptioningSolver(model, data, update_rule='adam', optim_config={'learning_rate': 5e-3},
                              lr_decay=0.95, batch_size=25, num_epochs=10, print_every=100,
                              seed=0, checkpoint_path='checkpoints/lstm.npz')
    solver.train()
    plt.plot(solver.loss_history)

Every iteration draws a random minibatch of training captions (with replacement, as the classic kit
did), computes the loss and gradients with `model.loss(features, captions)` and updates each parameter
with its own copy of the optimizer config. After every epoch the learning rate is multiplied by
`lr_decay` and a checkpoint is written when `checkpoint_path` is set. Every `val_every` epochs (about
ten times a run by default) the validation loss and BLEU are measured on capped subsets of the validation
split and the best parameters so far are kept in `best_params`. A new solver continues a run exactly
where it stopped with `load_checkpoint(path)` then `train()`.

The loop itself is the kit's one training loop, asgn3.trainer.Trainer; this class hands it the caption
minibatches and hangs the learning-rate decay, the validation and the checkpoints on its epoch callbacks.
"""

import numpy as np

from asgn3.caption_metrics import bleu_scores
from asgn3.checkpoint import load_checkpoint, save_checkpoint
from asgn3.coco_utils import decode_captions, sample_coco_minibatch
from asgn3.trainer import Progress, Trainer, decay_learning_rate

BEST_BY = ("val_loss", "bleu4")


def _trainer_attribute(name):
    """A solver attribute that reads and writes the attribute `name` of its trainer."""
    return property(
        lambda self: getattr(self.trainer, name), lambda self, value: setattr(self.trainer, name, value)
    )


class CaptioningSolver:
    """
    A CaptioningSolver encapsulates all the logic necessary for training image captioning models. It
    performs stochastic gradient descent using the update rules defined in optim.py.

    The model needs `params`, a dict of arrays (updated in place), and `loss(features, captions)` ->
    `(loss, grads)` with grads keyed like params. The BLEU measurement also uses `model.sample(features)`
    and `data['idx_to_word']` when they exist.

    Options (keyword arguments):
    - update_rule: 'sgd', 'sgd_momentum', 'rmsprop' or 'adam' (default 'sgd')
    - optim_config: hyperparameters of the update rule, e.g. {'learning_rate': 5e-3}; each parameter
      gets its own copy (default {})
    - lr_decay: factor applied to the learning rate at the end of every epoch (default 1.0)
    - batch_size: captions per minibatch (default 100)
    - num_epochs: number of epochs to train; an epoch is num_train_captions // batch_size iterations
      (default 10)
    - print_every: print the training loss every this many iterations (default 10)
    - verbose: show a progress bar and print losses and per-epoch results (default True)
    - seed: seed of the minibatch draws; None draws the seed from np.random, so that np.random.seed
      makes runs reproducible as in the classic kit (default None)
    - val_every: validate at the end of every this many epochs and of the last one; None picks
      max(1, num_epochs // 10), about ten validations a run (default None)
    - num_val_captions: validation loss on the first this many validation captions; None for all, 0 to
      skip (default 100)
    - num_val_images: BLEU on the first this many validation images (their captions all serve as
      references); None for all, 0 to skip (default 20)
    - best_by: 'val_loss' (lowest) or 'bleu4' (highest): which validation measure picks best_params;
      when it is not measured, best_params follows the latest parameters (default 'val_loss')
    - checkpoint_path: if set, a checkpoint (.npz) is written there at the end of every epoch (default None)

    Attributes after train(): loss_history (one loss per iteration); val_epochs (the epochs validated),
    val_loss_history and val_bleu_history (one entry per validated epoch: a float and a dict of BLEU-1..4,
    None when not measured); best_params, best_score, epoch.

    Validation costs about as much as training on num_val_captions captions: on 50 captions trained for 50
    epochs of 2 minibatches (the classic overfitting check) it would dominate if it ran every epoch.
    """

    def __init__(self, model, data, **kwargs):
        """
        Construct a new CaptioningSolver instance.

        Inputs:
        - model: a model object with params and loss (see the class docstring)
        - data: dict from load_coco_data: train_captions, train_image_idxs, train_features, and for
          validation val_captions, val_image_idxs, val_features, idx_to_word
        - kwargs: the options listed in the class docstring
        """
        self.model = model
        self.data = data
        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = kwargs.pop("batch_size", 100)
        self.num_epochs = kwargs.pop("num_epochs", 10)
        self.print_every = kwargs.pop("print_every", 10)
        self.verbose = kwargs.pop("verbose", True)
        seed = kwargs.pop("seed", None)
        self.val_every = kwargs.pop("val_every", None)
        self.num_val_captions = kwargs.pop("num_val_captions", 100)
        self.num_val_images = kwargs.pop("num_val_images", 20)
        self.best_by = kwargs.pop("best_by", "val_loss")
        self.checkpoint_path = kwargs.pop("checkpoint_path", None)
        if kwargs:
            raise ValueError(
                f"unrecognized option(s) {', '.join(sorted(kwargs))}: CaptioningSolver takes "
                f"update_rule, optim_config, lr_decay, batch_size, num_epochs, print_every, "
                f"verbose, seed, val_every, num_val_captions, num_val_images, best_by, "
                f"checkpoint_path"
            )
        if self.best_by not in BEST_BY:
            raise ValueError(f"invalid best_by {self.best_by!r}: use one of {BEST_BY}")
        for key in ("train_captions", "train_image_idxs", "train_features"):
            if key not in data:
                raise ValueError(f"data has no '{key}': pass the dict returned by load_coco_data")
        if self.val_every is not None and not (isinstance(self.val_every, int) and self.val_every >= 1):
            raise ValueError(f"val_every must be None or a positive integer, got {self.val_every!r}")
        if self.batch_size < 1 or self.num_epochs < 0:
            raise ValueError(
                f"expected batch_size >= 1 and num_epochs >= 0, got {self.batch_size} and {self.num_epochs}"
            )
        if seed is None:
            seed = int(np.random.randint(2**31 - 1))
        self.rng = np.random.default_rng(seed)
        self._references = {}
        self._reset()

    def _reset(self):
        """Set up a fresh run: its trainer (which checks update_rule) with the per-epoch callbacks, and the
        validation bookkeeping."""
        self.trainer = Trainer(self.model, self.update_rule, self.optim_config)
        self.progress = Progress(self.verbose, self.print_every)
        self.trainer.add_callback("on_epoch_end", decay_learning_rate(self.lr_decay))
        self.trainer.add_callback("on_epoch_end", self._validate_when_due)
        self.trainer.add_callback("on_epoch_end", self._checkpoint)
        self.progress.attach(self.trainer)
        self.val_epochs = []
        self.val_loss_history = []
        self.val_bleu_history = []
        self.best_score = None
        self.best_params = {k: v.copy() for k, v in self.model.params.items()}

    # The run's counters and optimizer state live in the trainer; these are the classic names for them.
    epoch = _trainer_attribute("epoch")
    iteration = _trainer_attribute("iteration")
    loss_history = _trainer_attribute("loss_history")
    optim_configs = _trainer_attribute("optim_configs")

    # -- Training ---------------------------------------------------------------------------------------

    def _minibatches(self):
        """Random minibatches of training captions, drawn with replacement: (features, captions) forever."""
        while True:
            captions, features, _ = sample_coco_minibatch(
                self.data, batch_size=self.batch_size, split="train", rng=self.rng
            )
            yield features, captions

    def iterations_per_epoch(self):
        """The number of minibatches in one epoch: training captions // batch_size, at least 1."""
        return max(self.data["train_captions"].shape[0] // self.batch_size, 1)

    def train(self):
        """
        Run optimization until num_epochs epochs are done (continuing a loaded checkpoint's run).
        """
        per_epoch = self.iterations_per_epoch()
        self.trainer.run(self._minibatches(), self.num_epochs * per_epoch, per_epoch)

    def _validate_when_due(self, trainer):
        """Validate every val_every epochs (None: about ten times a run) and after the last epoch."""
        every = self.val_every or max(1, self.num_epochs // 10)
        if self.epoch % every == 0 or self.epoch == self.num_epochs:
            self._validate()

    def _checkpoint(self, trainer):
        """Write the checkpoint of the epoch just ended, when checkpoint_path is set."""
        if self.checkpoint_path is not None:
            self.save_checkpoint(self.checkpoint_path)

    def _validate(self):
        """Measure validation loss and BLEU, keep the best params, print the epoch's line."""
        val_loss = self.validation_loss() if self._wanted(self.num_val_captions) else None
        bleu = None
        if self._wanted(self.num_val_images) and hasattr(self.model, "sample") and "idx_to_word" in self.data:
            bleu = self.check_accuracy("val", num_images=self.num_val_images)
        if val_loss is not None or bleu is not None:
            self.val_epochs.append(self.epoch)
            self.val_loss_history.append(val_loss)
            self.val_bleu_history.append(bleu)

        score = val_loss if self.best_by == "val_loss" else (bleu or {}).get("bleu4")
        better = score is not None and (
            self.best_score is None
            or (score < self.best_score if self.best_by == "val_loss" else score > self.best_score)
        )
        if better or score is None:
            self.best_params = {k: v.copy() for k, v in self.model.params.items()}
            self.best_score = score if better else self.best_score
        if self.verbose:
            parts = [f"train loss {np.mean(self.loss_history[-self.iterations_per_epoch() :]):.4f}"]
            if val_loss is not None:
                parts.append(f"val loss {val_loss:.4f}")
            if bleu is not None:
                parts.append("val " + " ".join(f"BLEU-{n} {bleu[f'bleu{n}']:.3f}" for n in range(1, 5)))
            self.progress.write(f"(Epoch {self.epoch} / {self.num_epochs}) " + ", ".join(parts))

    def _wanted(self, count):
        """Whether a validation measure is asked for (count None or > 0) and the data has a val split."""
        has_val = all(key in self.data for key in ("val_captions", "val_image_idxs", "val_features"))
        return (count is None or count > 0) and has_val and len(self.data["val_captions"]) > 0

    # -- Validation ------------------------------------------------------------------------------------

    def validation_loss(self, split="val", num_captions=None):
        """
        The model's loss on the first captions of a split (the mean over captions, as the training loss).

        Inputs:
        - split: 'train' or 'val'
        - num_captions: how many captions; None uses the num_val_captions option (None there: all)

        Returns:
        - loss: float
        """
        num = self.num_val_captions if num_captions is None else num_captions
        captions = self.data[f"{split}_captions"][:num]
        image_idxs = self.data[f"{split}_image_idxs"][:num]
        total = 0.0
        for start in range(0, len(captions), self.batch_size):
            batch = slice(start, start + self.batch_size)
            features = self.data[f"{split}_features"][image_idxs[batch]]
            loss, _ = self.model.loss(features, captions[batch])
            total += float(loss) * len(captions[batch])
        return total / max(len(captions), 1)

    def _images_and_references(self, split, num_images):
        """The first num_images distinct images of a split, and all the reference captions of each."""
        key = (split, num_images)
        if key not in self._references:
            idxs = self.data[f"{split}_image_idxs"]
            images, first = np.unique(idxs, return_index=True)
            images = images[np.argsort(first)][:num_images]  # in order of first appearance
            order = np.argsort(idxs, kind="stable")
            sorted_idxs = idxs[order]
            starts = np.searchsorted(sorted_idxs, images, side="left")
            ends = np.searchsorted(sorted_idxs, images, side="right")
            captions = self.data[f"{split}_captions"]
            idx_to_word = self.data["idx_to_word"]
            references = [
                decode_captions(captions[order[s:e]], idx_to_word) for s, e in zip(starts, ends, strict=True)
            ]
            self._references[key] = (images, references)
        return self._references[key]

    def check_accuracy(self, split="val", num_images=None, batch_size=100, **sample_options):
        """
        Caption images of a split with model.sample and score them with corpus BLEU-1..4 against all
        the reference captions of each image.

        Inputs:
        - split: 'train' or 'val'
        - num_images: caption the first this many distinct images of the split, in the order they first
          appear among its captions (None: all)
        - batch_size: images per call of model.sample
        - sample_options: passed on to model.sample, e.g. beam_width=5 or max_length=20

        Returns:
        - dict {'bleu1': float, ..., 'bleu4': float}
        """
        images, references = self._images_and_references(split, num_images)
        features = self.data[f"{split}_features"]
        hypotheses = []
        for start in range(0, len(images), batch_size):
            sampled = self.model.sample(features[images[start : start + batch_size]], **sample_options)
            hypotheses.extend(decode_captions(np.atleast_2d(sampled), self.data["idx_to_word"]))
        return bleu_scores(references, hypotheses)

    # -- Checkpoints -----------------------------------------------------------------------------------

    def save_checkpoint(self, path):
        """
        Save everything needed to continue this run: params, best params, optimizer state, histories,
        epoch, iteration and the random generator's state, in one .npz file (layout in asgn3/checkpoint.py).

        Inputs:
        - path: file to write (a .npz file; its folder is created if needed)
        """
        state = {
            "update_rule": self.update_rule,
            "batch_size": self.batch_size,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_score": self.best_score,
            "loss_history": self.loss_history,
            "val_epochs": self.val_epochs,
            "val_loss_history": self.val_loss_history,
            "val_bleu_history": self.val_bleu_history,
            "rng_state": self.rng.bit_generator.state,
        }
        save_checkpoint(path, self.model.params, self.best_params, self.optim_configs, state)

    def load_checkpoint(self, path):
        """
        Restore a run saved by save_checkpoint into this solver and its model; train() then continues it.

        Inputs:
        - path: the .npz file written by save_checkpoint
        """
        saved = load_checkpoint(path, self.model.params)
        state = saved["state"]
        for option in ("update_rule", "batch_size"):
            if state[option] != getattr(self, option):
                raise ValueError(
                    f"{path} was saved with {option}={state[option]!r} but this solver has "
                    f"{getattr(self, option)!r}: use the same value to continue the run"
                )
        self.model.params.update(saved["params"])
        self.best_params = saved["best_params"]
        self.optim_configs = saved["optim_configs"]
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.loss_history = list(state["loss_history"])
        self.best_score = state["best_score"]
        self.val_epochs = list(state["val_epochs"])
        self.val_loss_history = list(state["val_loss_history"])
        self.val_bleu_history = list(state["val_bleu_history"])
        self.rng.bit_generator.state = state["rng_state"]
