"""Random draws of the library's own: retry jitter and sampling.

They come from a generator of our own, never the process-global ``random`` module, so an app
that seeds ``random`` gets the same sequence with or without the capture; the generator is
reseeded in a forked child, so workers forked from one parent do not draw alike.
"""

from __future__ import annotations

import os
import random

_GENERATOR = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_GENERATOR.seed)

# A float in [0, 1).
draw = _GENERATOR.random
# A float between the two bounds.
uniform = _GENERATOR.uniform
