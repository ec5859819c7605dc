#!/usr/bin/env bash
# The main job: meta-train on the built-in default task family, then print the few-shot
# table on held-out tasks and write the plot (runs/default/few_shot.png). Extra arguments
# go to `metadqn train` (see `metadqn train --help`).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/metadqn train "$@"
