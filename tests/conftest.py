"""Shared pytest setup: strict numerics so silent broadcasting bugs fail loudly."""

from __future__ import annotations

import jax

# Implicit rank promotion (e.g. [B] + [B, 1] -> [B, B]) is a classic silent RL bug: raise.
jax.config.update("jax_numpy_rank_promotion", "raise")
