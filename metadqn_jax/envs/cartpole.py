"""gymnax CartPole's derived ``EnvParams`` fields, recomputed from the fields they depend on.

gymnax's ``cartpole.EnvParams`` stores ``total_mass`` and ``polemass_length`` next to the masses
and the length they are computed from, so a task that varies ``masspole`` or ``length`` must
recompute them. :mod:`metadqn_jax.envs.registry` registers :func:`derive_cartpole` for every
CartPole-based params class (``CartPole-v1``, ``CartPoleSigned-v0``).
"""

from __future__ import annotations

from typing import Any

# Derived field -> the formula that recomputes it (listed in task-family error messages).
CARTPOLE_DERIVED: dict[str, str] = {
    "total_mass": "masscart + masspole",
    "polemass_length": "masspole * length",
}


def derive_cartpole(params: Any) -> Any:
    """Recomputes CartPole's derived fields: ``total_mass``, ``polemass_length``.

    Args:
      params: a CartPole ``EnvParams`` with scalar leaves (one task) or leaves ``[n]``
        (a batch of tasks; numpy or JAX arrays).

    Returns:
      ``params`` with ``total_mass = masscart + masspole`` and
      ``polemass_length = masspole * length`` (elementwise, in the leaves' own dtype).
    """
    return params.replace(
        total_mass=params.masscart + params.masspole,
        polemass_length=params.masspole * params.length,
    )
