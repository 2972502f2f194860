"""Dependency chains: items enqueued `after` others wait until those are all done.

The enqueue side is `ops.enqueue(after=…)` and `NewItem(after=…)`; the release and the cascade run in the
database (migration 0003's functions, called by the statements that finish an item). This package reads an
item's links for `show`: `ops.links` (a sans-I/O operation), `Dependencies(wq)` / `AsyncDependencies(wq)`.
"""
