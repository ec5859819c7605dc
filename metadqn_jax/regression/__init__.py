"""Supervised meta-regression (the MAML paper's sinusoid, section 5.1) on the same
meta-gradient core as meta-DQN."""

from metadqn_jax.regression.sinusoid import (
    DIVERGED_MSE,
    REGRESSION_ALGORITHMS,
    MetaTrainer,
    MetaTrainState,
    RegressionBatch,
    RegressionConfig,
    SinusoidTasks,
    TrainMetrics,
    adapt_and_predict,
    evaluate,
    make_meta_train,
    make_regressor,
    mse_loss,
    regressor_from_params,
)

__all__ = ["DIVERGED_MSE", "REGRESSION_ALGORITHMS", "MetaTrainer", "MetaTrainState", "RegressionBatch",
           "RegressionConfig", "SinusoidTasks", "TrainMetrics", "adapt_and_predict", "evaluate",
           "make_meta_train", "make_regressor", "mse_loss", "regressor_from_params"]
