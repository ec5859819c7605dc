"""The application layer behind the ``metadqn`` command: run configuration files, presets and
logs. The library (``metadqn_jax.core``, ``.meta``, ``.fewshot``, ...) never imports it."""
