"""The application layer behind the ``metadqn`` command: one module per command (``train``,
``evaluate``, ``dqn``, ``regress``, ``families``), run folders (``runs``), configurations
(``runconfig``, ``settings``, ``yamlio``, ``presets``), logs, results and plots. The library
(``metadqn_jax.core``, ``.meta``, ``.fewshot``, ...) never imports it; ``metadqn_jax.deploy``
reads run folders through it. The command modules import jax only inside their functions, so
``metadqn --help`` starts without it."""
