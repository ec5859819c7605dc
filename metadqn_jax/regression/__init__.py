"""Supervised few-shot sinusoid regression (Finn et al. 2017, section 5.1) on the same
meta-gradient core as meta-DQN (:mod:`metadqn_jax.meta.gradient`).

* :mod:`~metadqn_jax.regression.tasks`: the task family ``y = A sin(x − φ)``
  (:class:`SinusoidTasks`, :class:`RegressionBatch`);
* :mod:`~metadqn_jax.regression.model`: the ReLU MLP regressor and its MSE loss;
* :mod:`~metadqn_jax.regression.train`: :class:`RegressionConfig` and :func:`make_meta_train`
  (MAML / FOMAML / Reptile / the pretrained baseline; a ``lax.scan`` per chunk);
* :mod:`~metadqn_jax.regression.evaluation`: :func:`evaluate` and :func:`adapt_and_predict`
  (fine-tune on K points with SGD, grid MSE with 95 % intervals).

Typical use::

    cfg = RegressionConfig(algorithm="maml", num_iterations=70_000)
    trainer = make_meta_train(cfg)
    state, metrics = trainer.run(jax.random.key(0))
    tasks = SinusoidTasks().eval_tasks(seed=1234, n=1000)
    stats = evaluate(state.params, tasks, jax.random.key(7), shots=(5, 10))
    stats[5][1]["mean"]  # 5-shot MSE after one inner SGD step
"""

from metadqn_jax.regression.evaluation import DIVERGED_MSE, adapt_and_predict, evaluate
from metadqn_jax.regression.model import make_regressor, mse_loss, regressor_from_params
from metadqn_jax.regression.tasks import RegressionBatch, SinusoidTasks
from metadqn_jax.regression.train import (
    REGRESSION_ALGORITHMS,
    MetaTrainer,
    MetaTrainState,
    RegressionConfig,
    TrainMetrics,
    make_meta_train,
)

__all__ = ["DIVERGED_MSE", "REGRESSION_ALGORITHMS", "MetaTrainer", "MetaTrainState", "RegressionBatch",
           "RegressionConfig", "SinusoidTasks", "TrainMetrics", "adapt_and_predict", "evaluate",
           "make_meta_train", "make_regressor", "mse_loss", "regressor_from_params"]
