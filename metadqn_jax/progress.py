"""Progress on stderr (results go to stdout): the bar of chunked meta-training (the library's
``train_meta`` and the commands) and one-line notes (:func:`info`).

A compiled chunk of meta-steps is the unit of progress; the first chunk also pays the
compilation, so :class:`ChunkBar` shows "compiling" until it ends and measures the rate and
the ETA from there on (compile time excluded).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import tqdm.auto


def info(msg: str) -> None:
    """Prints a note or progress line on stderr (results go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


class ChunkBar:
    """A tqdm bar on stderr for ``total`` meta-steps, starting at ``start`` (a resumed run), on
    terminal line ``position`` below the cursor (``None``: the current one; bars of runs that
    train at once each take their own).

    "compiling" until the first :meth:`chunk` call, then the query loss (and validation return)
    of the last chunk, and a rate and ETA measured from the end of the first chunk.
    """

    def __init__(self, desc: str, total: int, start: int = 0, position: int | None = None):
        self.bar = tqdm.auto.tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True, smoothing=0,
                                  position=position, leave=position is None or position == 0)
        self.bar.set_postfix_str("compiling", refresh=True)
        self.compiled = False

    def chunk(self, row: Mapping[str, Any]) -> None:
        """Advances the bar to ``row["meta_step"]`` (a :func:`metadqn_jax.driver.train_meta` history row)."""
        step = int(row["meta_step"])
        post = {"loss": f"{row['query_loss']:.4f}"}
        if "val_return" in row:
            post["val"] = f"{row['val_return']:.2f}"
        if not self.compiled:  # the rate starts here: (n - initial) / (now - start_t)
            self.compiled = True
            self.bar.n = self.bar.initial = self.bar.last_print_n = step
            self.bar.start_t = self.bar.last_print_t = time.time()
            self.bar.set_postfix(post)
        else:
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        """Closes the bar (its last line stays on the terminal)."""
        self.bar.close()
