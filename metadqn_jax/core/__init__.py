"""The functional core: pytree types and selection (`tree`), replay, rollouts, losses, networks, optimisers,
validation and statistics. Nothing here knows about tasks, learners or the CLI."""
