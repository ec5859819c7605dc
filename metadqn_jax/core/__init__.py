"""The functional core: pytree types, replay, rollouts, losses, networks, optimisers,
validation and statistics. Nothing here knows about tasks, learners or the CLI."""
