"""The database layer, one concern a module: `base` (Base, mixins, engines), `errors`,
`position` (WAL positions, read-your-writes), `sessions` (typed sessions), `monitor`
(replica health), `counters`, `router` (DatabaseRouter), `lifecycle` (this process's
router), `dependencies` (FastAPI session dependencies) and `middleware`.

Nothing here imports a domain package.
"""
