"""``python -m metadqn_jax`` = the ``metadqn`` command (see :mod:`metadqn_jax.cli`)."""

from metadqn_jax.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
