"""The garbage collector's view of a long-running process.

CPython's cyclic collector looks at every tracked object of a generation when it collects it,
and the oldest generation holds everything imported and built at start-up: modules, classes,
the routes, the store's statements. None of that ever becomes garbage, yet each full collection
walks all of it again. `freeze_startup` moves it out of the collector's sight once start-up is
done (gc.freeze, which the documentation offers to pre-fork servers; here it spares the walk);
objects made later are collected as before.

Measured with callgrind (instructions, which unlike timings repeat here): the delivery worker
draining 3,000 notifications with HTTP stubbed went from 492,500 to 458,400 instructions per
notification (-7%).
"""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Collect once, then leave every object alive now out of later collections."""
    gc.collect()
    gc.freeze()
