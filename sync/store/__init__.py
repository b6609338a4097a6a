"""Storage for the sync agent: its own ``sync.db`` and a read-only view of ``terminal.db``.

One writer per database file (ARCHITECTURE.md, SQLite note): the kiosk process
writes ``terminal.db``, the agent writes ``sync.db``; each reads the other's
file read-only. One module per job:

* :mod:`sync.store.schema`: the ``sync.db`` tables and the set-up of a new file.
* :mod:`sync.store.kiosk_reader`: read-only engines (``mode=ro``,
  ``query_only``) and the kiosk's outbox read from ``terminal.db``
  (:class:`~sync.store.kiosk_reader.KioskOutboxReader`); the agent never
  writes that file.
* :mod:`sync.store.outbox`: the agent's store, the only writer of ``sync.db``
  (:class:`~sync.store.outbox.SyncStore`: acknowledgement state, results and
  dead letters per stream, pulled datasets; :class:`~sync.store.outbox.AgentOutbox`:
  the agent's own record stream).
* :mod:`sync.store.status`: the read-only status model for the kiosk and
  ``sync status`` (:func:`~sync.store.status.sync_status`,
  :func:`~sync.store.status.latest_dataset`,
  :class:`~sync.store.status.AckedThrough`).
"""
