#!/usr/bin/env bash
# The whole test suite (CPU). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/python -m pytest -q -n 2 "$@"
