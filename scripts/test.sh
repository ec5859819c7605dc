#!/usr/bin/env bash
# The whole test suite (CPU). Extra arguments go to pytest.
# --dist loadscope: each test module runs on one worker, so a module-scoped fixture (test_cli's
# and test_sharding's training runs, 50-100 s each) runs once, not once per worker that got one of
# the module's tests (xdist's default hands tests out in chunks that split modules; measured: both
# fixtures ran twice). Not loadgroup: with pytest 9.2, xdist 3.8's xdist_group marks are ignored.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/python -m pytest -q -n 2 --dist loadscope "$@"
