"""Large batches without cyclic garbage collection: :func:`collector_paused`.

Loading a store and filtering many documents build hundreds of thousands of
objects that stay alive until the work ends (parsed entities, link requests,
a filter's resources and answers). Each of them moves the collector closer to a
full collection, which walks the whole heap, so the cost per item grew with the
batch size. They hold no cycles to collect; reference counting still frees
everything dropped. The collector is left as found.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LARGE_BATCH", "collector_paused"]

#: From this many items a batch (a filter, ``authorize_many``) pauses the collector.
LARGE_BATCH = 100

_LOCK = threading.Lock()
# Batches in progress, and whether the collector was enabled when the first began.
_paused = 0
_was_enabled = False


@contextmanager
def collector_paused(pause: bool = True) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the block runs (when ``pause``).

    Batches in several threads share one pause: the collector is enabled again
    when the last one ends, and only if it was enabled when the first began (an
    application that disabled it keeps it disabled).

    Example:
        >>> import gc
        >>> with collector_paused():
        ...     gc.isenabled()
        False
        >>> gc.isenabled()
        True
    """
    global _paused, _was_enabled
    if not pause:
        yield
        return
    with _LOCK:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _LOCK:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()
