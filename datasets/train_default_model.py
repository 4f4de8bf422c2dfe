"""Train the kit's default pretrained CNN on the TinyImageNet-format default, with the kit's own code.

The network is the classic PretrainedCNN (nine conv - spatial batchnorm - ReLU blocks, no pooling, then
affine - batchnorm - ReLU and the scores) at a quarter of the classic widths, so that it trains in about an
hour and a half on two busy CPU cores; its conv9 output (256 x 2 x 2 = 1024 values) is the raw image feature
of the COCO-format default. Training uses datasets/classifier_trainer.py (the kit's one training loop,
asgn3.trainer) with Adam or SGD with momentum (`--update-rule`), a learning rate decayed after every epoch
or on a cosine (`--schedule`), optional weight decay and label smoothing, and augmentation (flips, or
flips + colour-channel shuffles + shifts); it keeps the best epoch by validation accuracy and writes the
weights in the classic HDF5 layout with a SHA-256 file next to them and a note of how it was trained.
`--init` continues from saved weights, `--widths` with `--init` continues from a wider copy of them (`widen`),
`--noise` adds SmoothGrad-like noise to half of each batch, `--average-last K` writes the average of the
weights after the last K epochs with batchnorm statistics measured again (stochastic weight averaging,
datasets/average_weights.py) instead of the best epoch. The shipped model is a run from scratch, two
fine-tunes of it and the average of those (datasets/average_weights.py); the commands are in
datasets/pretrained/default_pretrained_model.txt and the README.

Usage (from the kit's folder, after `bash kit.sh setup` built the default data):
    python -m datasets.train_default_model [--epochs 11] [--update-rule sgd_momentum --schedule cosine]
        [--weight-decay 5e-4] [--noise 0.15] [--init FILE.h5 [--widths 24,24,...]] [--average-last K]
        [--out FILE.h5]
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

from asgn3.attribution import noise_scale
from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.data_paths import DEFAULT_PRETRAINED_MODEL, DEFAULT_TINY_IMAGENET_DIR
from asgn3.data_utils import load_tiny_imagenet
from datasets.average_weights import average_models, recompute_batchnorm_statistics
from datasets.checksum import write_checksum
from datasets.classifier_trainer import (
    LR_SCHEDULES,
    ClassifierTrainer,
    accuracy,
    label_smoothing_loss,
    random_flips,
)

NUM_FILTERS = (16, 16, 32, 32, 64, 64, 128, 128, 256)  # a quarter of the classic widths
HIDDEN_DIM = 256


def augment(X, rng, max_shift=4):
    """
    Random label-preserving changes of a minibatch: left-right flips, a shuffle of the colour channels (the
    items' colours are random anyway) and a shift of up to max_shift pixels (edges repeated).

    Inputs:
    - X: images (N, 3, H, W), mean subtracted; not modified.
    - rng: numpy Generator.
    - max_shift: largest shift in pixels, in each direction.

    Returns the changed minibatch (N, 3, H, W).
    """
    N, C, H, W = X.shape
    X = random_flips(X, rng)
    channels = rng.permuted(np.tile(np.arange(C), (N, 1)), axis=1)
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=(2, N))
    rows = np.clip(np.arange(H)[None, :] + dy[:, None], 0, H - 1)
    cols = np.clip(np.arange(W)[None, :] + dx[:, None], 0, W - 1)
    n = np.arange(N)[:, None, None, None]
    return X[n, channels[:, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def add_noise(X, rng, noise_level):
    """
    Gaussian noise on a random half of a minibatch, with standard deviation noise_level * (max - min) of
    each image: the noise SmoothGrad adds (asgn3.attribution). A network trained on such copies keeps its
    gradients on the item (Kaur et al. 2019: perceptually aligned gradients of noise-trained networks),
    so that its saliency maps show the item instead of noise around it; the clean half keeps the accuracy.

    Inputs:
    - X: images (N, C, H, W), mean subtracted; not modified.
    - rng: numpy Generator.
    - noise_level: the noise's standard deviation as a fraction of each image's range.

    Returns the minibatch with noise added to about half of its images (N, C, H, W).
    """
    noisy = rng.random(len(X)) < 0.5
    noise = noisy[:, None, None, None] * noise_scale(X, noise_level) * rng.standard_normal(X.shape)
    return X + noise.astype(X.dtype)


def widen(model, num_filters, rng):
    """
    A wider copy of a trained PretrainedCNN that computes the same function (Net2Net's idea, Chen et al.
    2016, with the new units' outgoing weights at zero instead of split): each conv block keeps its
    filters and gets new ones with He-random incoming weights, unit gamma and zero beta; the next layer
    reads the new channels with zero weights, so the scores do not change until training moves them.

    Inputs:
    - model: the trained PretrainedCNN.
    - num_filters: the new widths, one per conv block, each at least the old one.
    - rng: numpy Generator for the new filters.

    Returns a new PretrainedCNN with model's strides, pads, hidden layer and batchnorm statistics.
    """
    old_widths = model.num_filters
    too_narrow = any(new < old for new, old in zip(num_filters, old_widths, strict=False))
    if len(num_filters) != len(old_widths) or too_narrow:
        raise ValueError(
            f"widen needs one width per conv block, each at least {old_widths}; got {num_filters}"
        )
    wide = PretrainedCNN(
        dtype=model.dtype,
        num_classes=model.num_classes,
        input_size=model.input_size,
        num_filters=num_filters,
        filter_sizes=model.filter_sizes,
        strides=[cp["stride"] for cp in model.conv_params],
        pads=[cp["pad"] for cp in model.conv_params],
        hidden_dim=model.hidden_dim,
        in_channels=model.in_channels,
        seed=0,
    )
    for i, old in enumerate(old_widths, start=1):
        W = wide.params[f"W{i}"]
        W[:old] = 0.0
        W[:old, : model.params[f"W{i}"].shape[1]] = model.params[f"W{i}"]
        W[old:] = np.sqrt(2.0 / np.prod(W.shape[1:])) * rng.standard_normal(W[old:].shape)
        for key in (f"b{i}", f"gamma{i}", f"beta{i}"):
            wide.params[key][:old] = model.params[key]
        bn_old, bn_new = model.bn_params[i - 1], wide.bn_params[i - 1]
        bn_new["running_mean"][:old] = bn_old["running_mean"]
        bn_new["running_var"][:old] = bn_old["running_var"]
    # The hidden affine layer reads the last conv block flattened as (channel, row, column).
    h = model.num_conv + 1
    last_old, last_new, side = old_widths[-1], num_filters[-1], model.feature_sizes[-1]
    W = np.zeros((last_new, side * side, model.hidden_dim), model.dtype)
    W[:last_old] = model.params[f"W{h}"].reshape(last_old, side * side, -1)
    wide.params[f"W{h}"] = W.reshape(last_new * side * side, -1)
    for key in (f"b{h}", f"gamma{h}", f"beta{h}", f"W{h + 1}", f"b{h + 1}"):
        wide.params[key] = model.params[key].copy()
    wide.bn_params[h - 1]["running_mean"] = model.bn_params[h - 1]["running_mean"].copy()
    wide.bn_params[h - 1]["running_var"] = model.bn_params[h - 1]["running_var"].copy()
    return wide


def augmentation(name, noise_level):
    """The function f(X_batch, rng) -> X_batch of an --augment choice, then noise when noise_level > 0."""
    base = augment if name == "all" else random_flips
    if noise_level <= 0:
        return base
    return lambda X, rng: add_noise(base(X, rng), rng, noise_level)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_TINY_IMAGENET_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_PRETRAINED_MODEL)
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lr-decay", type=float, default=0.8)
    parser.add_argument(
        "--schedule",
        choices=LR_SCHEDULES,
        default="decay",
        help="learning rate times --lr-decay after every epoch, or a cosine down to 0 over the run",
    )
    parser.add_argument("--update-rule", choices=("adam", "sgd_momentum"), default="adam")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty on the weights")
    parser.add_argument(
        "--label-smoothing", type=float, default=0.0, help="share of each target spread over all classes"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-train-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--augment",
        choices=("flips", "all"),
        default="all",
        help="flips only, or flips + colour-channel shuffles + shifts",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="also add Gaussian noise of this fraction of each image's range to a random half of each batch",
    )
    parser.add_argument(
        "--widths",
        type=lambda text: tuple(int(w) for w in text.split(",")),
        default=None,
        help=f"filters of the nine conv blocks, comma-separated (default {','.join(map(str, NUM_FILTERS))}); "
        "with --init, a wider copy of that model (same function, new filters random) is trained, and the "
        "default is the model's own widths",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from the weights in this file (to continue a training run)",
    )
    parser.add_argument(
        "--average-last",
        type=int,
        default=0,
        metavar="K",
        help="write the average of the weights after each of the last K epochs, with batchnorm statistics "
        "measured again on the training images (stochastic weight averaging; use it with --lr-decay 1), "
        "instead of the best epoch",
    )
    args = parser.parse_args()
    if not 0 <= args.average_last <= args.epochs:
        parser.error(f"--average-last must lie in 0..--epochs ({args.epochs}), not {args.average_last}")

    started = time.time()
    data = load_tiny_imagenet(
        args.data, dtype=np.float32, subtract_mean=True, max_train_per_class=args.max_train_per_class
    )
    print(
        f"loaded {data['X_train'].shape[0]} training and {data['X_val'].shape[0]} validation images in "
        f"{time.time() - started:.0f} s",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    if args.init is not None:
        model = PretrainedCNN(h5_file=args.init)
        if args.widths is not None and model.num_filters != args.widths:
            model = widen(model, args.widths, rng)
    else:
        model = PretrainedCNN(
            num_classes=len(data["class_names"]),
            num_filters=args.widths or NUM_FILTERS,
            hidden_dim=HIDDEN_DIM,
            seed=args.seed,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out.with_name(args.out.stem + ".best-so-far.h5")
    best = {"acc": -1.0}

    last_epochs = []  # copies of the model after each of the last --average-last epochs

    def after_epoch(epoch, model, val_acc):
        # Keep the best weights on disk while training, so an interrupted run still leaves a model.
        if val_acc > best["acc"]:
            best["acc"] = val_acc
            model.save_weights(checkpoint)
        if epoch > args.epochs - args.average_last:
            last_epochs.append(copy.deepcopy(model))

    trainer = ClassifierTrainer()
    trainer.train(
        data["X_train"],
        data["y_train"],
        data["X_val"],
        data["y_val"],
        model,
        label_smoothing_loss(model, args.label_smoothing) if args.label_smoothing > 0 else model.loss,
        update_rule=args.update_rule,
        learning_rate=args.learning_rate,
        lr_decay=args.lr_decay,
        lr_schedule=args.schedule,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        num_epochs=args.epochs,
        augment_fn=augmentation(args.augment, args.noise),
        epoch_callback=after_epoch,
        seed=args.seed,
        verbose=True,
    )
    val_acc = trainer.best_val_acc
    if args.average_last:
        model = recompute_batchnorm_statistics(average_models(last_epochs), data["X_train"], args.batch_size)
        val_acc = accuracy(model.loss, data["X_val"], data["y_val"])
        print(f"the average of the last {args.average_last} epochs: val acc {val_acc:.3f}")
    model.save_weights(args.out)
    checkpoint.unlink(missing_ok=True)
    digest = write_checksum(args.out)
    minutes = (time.time() - started) / 60
    command = "python -m datasets.train_default_model " + " ".join(sys.argv[1:])
    note = (
        f"command: {command.strip()}\n"
        f"architecture: PretrainedCNN(num_classes=10, num_filters={model.num_filters}, "
        f"hidden_dim={HIDDEN_DIM})\n"
        f"training: {args.update_rule}, learning_rate {args.learning_rate}, "
        f"{'cosine schedule' if args.schedule == 'cosine' else f'lr_decay {args.lr_decay}'}, "
        f"weight_decay {args.weight_decay}, label_smoothing {args.label_smoothing}, "
        f"batch {args.batch_size}, "
        f"{args.epochs} epochs over {data['X_train'].shape[0]} images, augmentation {args.augment}"
        f"{f' + noise {args.noise} on half of each batch' if args.noise > 0 else ''}, "
        f"seed {args.seed}"
        f"{f', starting from {args.init}' if args.init else ''}\n"
        f"{f'average of the last {args.average_last} epochs' if args.average_last else 'best epoch'}: "
        f"validation accuracy {val_acc:.4f} on {data['X_val'].shape[0]} images\n"
        f"run time: {minutes:.1f} minutes\n"
        f"sha256: {digest}\n"
    )
    # A continued run adds its note to the first run's, so the file tells the whole history.
    with open(args.out.with_suffix(".txt"), "a" if args.init is not None else "w") as f:
        f.write(("\n" if args.init is not None else "") + note)
    print(note, end="")


if __name__ == "__main__":
    main()
