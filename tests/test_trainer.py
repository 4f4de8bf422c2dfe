"""Tests of asgn3/trainer.py: the one training loop, its events and callbacks, learning-rate decay, output."""

import itertools

import numpy as np
import pytest

from asgn3.trainer import Progress, Trainer, cosine_learning_rate, decay_learning_rate


class LinearModel:
    """Least squares y ~ X w + b: the smallest model with params and loss(X, y) -> (loss, grads)."""

    def __init__(self, D, dtype=np.float64):
        self.params = {"w": np.zeros(D, dtype), "b": np.zeros(1, dtype)}

    def loss(self, X, y):
        residual = X @ self.params["w"] + self.params["b"][0] - y
        loss = 0.5 * np.mean(residual**2)
        grads = {"w": X.T @ residual / len(y), "b": np.array([residual.mean()])}
        return loss, grads


def regression_problem(N=64, D=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    w, b = np.array([1.5, -2.0, 0.5]), 0.7
    return X, X @ w + b, w, b


def test_full_batch_training_fits_a_linear_model():
    X, y, w, b = regression_problem()
    model = LinearModel(3)
    trainer = Trainer(model, "sgd", {"learning_rate": 0.3})
    trainer.run(itertools.repeat((X, y)), num_iterations=200)
    print("loss at 1, 10, 200:", trainer.loss_history[0], trainer.loss_history[9], trainer.loss_history[-1])
    assert trainer.iteration == len(trainer.loss_history) == 200 and trainer.epoch == 0
    assert trainer.loss_history[-1] < 1e-8 < trainer.loss_history[0]
    np.testing.assert_allclose(model.params["w"], w, atol=1e-4)
    np.testing.assert_allclose(model.params["b"], [b], atol=1e-4)


def test_events_come_in_order_and_a_second_run_continues_the_first():
    X, y, _, _ = regression_problem()
    trainer = Trainer(LinearModel(3), "sgd", {"learning_rate": 0.1})
    events = []
    for event in ("on_run_start", "on_batch_end", "on_epoch_end", "on_run_end"):
        trainer.add_callback(event, lambda t, event=event: events.append((event, t.iteration, t.epoch)))
    trainer.run(itertools.repeat((X, y)), num_iterations=7, iterations_per_epoch=3)
    assert events[0] == ("on_run_start", 0, 0) and events[-1] == ("on_run_end", 7, 2)
    assert [e for e in events if e[0] == "on_epoch_end"] == [("on_epoch_end", 3, 1), ("on_epoch_end", 6, 2)]
    assert [e[1] for e in events if e[0] == "on_batch_end"] == list(range(1, 8))
    # the epoch's callback follows the batch's of the same iteration
    assert events.index(("on_epoch_end", 3, 1)) == events.index(("on_batch_end", 3, 0)) + 1
    events.clear()
    trainer.run(itertools.repeat((X, y)), num_iterations=10, iterations_per_epoch=3)
    assert [e[1] for e in events if e[0] == "on_batch_end"] == [8, 9, 10]
    assert trainer.epoch == 3 and len(trainer.loss_history) == 10


def test_every_parameter_has_its_own_config_and_the_decay_applies_to_each():
    X, y, _, _ = regression_problem()
    config = {"learning_rate": 1e-2}
    trainer = Trainer(LinearModel(3, np.float32), "adam", config)
    trainer.add_callback("on_epoch_end", decay_learning_rate(0.5))
    trainer.run(itertools.repeat((X, y)), num_iterations=6, iterations_per_epoch=2)
    assert config == {"learning_rate": 1e-2}  # the caller's dict is not touched
    assert trainer.optim_configs["w"] is not trainer.optim_configs["b"]
    for name, value in trainer.model.params.items():
        assert value.dtype == np.float32, name  # the updates keep the parameters' dtype
        assert trainer.optim_configs[name]["learning_rate"] == pytest.approx(1e-2 * 0.5**3)
        assert trainer.optim_configs[name]["t"] == 6
        assert trainer.optim_configs[name]["m"].shape == value.shape


def test_the_cosine_schedule_goes_from_the_base_rate_to_zero():
    X, y, _, _ = regression_problem()
    trainer = Trainer(LinearModel(3), "sgd", {"learning_rate": 0.2})
    rates = []
    trainer.add_callback("on_batch_end", cosine_learning_rate(0.2, 8))
    trainer.add_callback("on_batch_end", lambda t: rates.append(t.optim_configs["w"]["learning_rate"]))
    trainer.run(itertools.repeat((X, y)), num_iterations=8)
    print("rates", rates)
    expected = [0.1 * (1 + np.cos(np.pi * t / 8)) for t in range(1, 9)]
    np.testing.assert_allclose(rates, expected, atol=1e-12)
    assert rates[3] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert trainer.optim_configs["b"]["learning_rate"] == rates[-1]


def test_a_loss_function_other_than_model_loss():
    X, y, w, _ = regression_problem()
    model = LinearModel(3)
    calls = []

    def loss_fn(X_batch, y_batch):
        calls.append(len(y_batch))
        return model.loss(X_batch, y_batch)

    batches = ((X[i : i + 16], y[i : i + 16]) for i in itertools.cycle(range(0, 64, 16)))
    Trainer(model, "sgd_momentum", {"learning_rate": 0.1}, loss_fn=loss_fn).run(batches, 300)
    assert calls == [16] * 300
    np.testing.assert_allclose(model.params["w"], w, atol=1e-3)


def test_bad_input_is_a_clear_error():
    X, y, _, _ = regression_problem()
    with pytest.raises(ValueError, match="invalid update_rule 'adagrad'"):
        Trainer(LinearModel(3), "adagrad")
    trainer = Trainer(LinearModel(3), "sgd", {"learning_rate": 1e3})
    with pytest.raises(ValueError, match="unknown event 'on_step'"):
        trainer.add_callback("on_step", print)
    with pytest.raises(ValueError, match="iterations_per_epoch must be None or >= 1"):
        trainer.run(itertools.repeat((X, y)), 5, iterations_per_epoch=0)
    diverging = pytest.raises(FloatingPointError, match="lower the learning rate")
    with np.errstate(over="ignore", invalid="ignore"), diverging:
        trainer.run(itertools.repeat((X, y)), 100)  # a learning rate of 1000 diverges


def test_progress_prints_every_so_often_and_nothing_when_quiet(capsys):
    X, y, _, _ = regression_problem()
    trainer = Trainer(LinearModel(3), "sgd", {"learning_rate": 0.1})
    progress = Progress(print_every=4).attach(trainer)
    trainer.add_callback("on_epoch_end", lambda t: progress.write(f"end of epoch {t.epoch}"))
    trainer.run(itertools.repeat((X, y)), 10, iterations_per_epoch=5)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line]
    assert [line.split(")")[0] for line in lines if line.startswith("(")] == [
        "(Iteration 1 / 10",
        "(Iteration 5 / 10",
        "(Iteration 9 / 10",
    ]
    assert "end of epoch 1" in lines and "end of epoch 2" in lines
    quiet = Trainer(LinearModel(3), "sgd", {"learning_rate": 0.1})
    Progress(verbose=False, print_every=1).attach(quiet)
    quiet.run(itertools.repeat((X, y)), 10)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
