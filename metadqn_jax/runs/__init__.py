"""Run folders and their configuration files, as a library (the commands of :mod:`metadqn_jax.app`
and :func:`metadqn_jax.load_policy` read and write them through these modules):

* :mod:`.layout` — the files inside a run folder (plain data: ``metadqn --help`` shows it);
* :mod:`.folder` — creating, locking and checking a run folder;
* :mod:`.yamlio` — YAML files, ``--set`` overrides, coercion to the annotated types;
* :mod:`.sections` — a command configuration: sections of dataclasses resolved from layers;
* :mod:`.settings` — the run-level settings (``run``, ``eval``, ``sweep`` sections);
* :mod:`.configs` — :class:`~.configs.TrainConfig` and the other commands' configurations;
* :mod:`.record` — ``config.yaml``: the resolved configuration and the defaults it used;
* :mod:`.families` — a user's task family from a YAML block, a module or a run folder.

Nothing is imported here, so :mod:`.layout` stays free of JAX.
"""
