"""Offline evaluation: replay bags or dataset folders through the certifier and report the paper's metrics.

Bag input/output lives in :mod:`.bagio` (reader, :class:`~.bagio.BagWriter`, :class:`~.bagio.BagError`),
``demasked-make-bag`` in :mod:`.make_bag`, ``demasked-eval`` in :mod:`.cli`. Submodules are imported on
demand so that ``import demasked_ros.apps.evaluate`` stays cheap.
"""
