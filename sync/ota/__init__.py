"""Over-the-air updates over Eclipse hawkBit's DDI API.

* :mod:`sync.ota.ddi` - the DDI client (poll, config data, deployment,
  resumable downloads, feedback, cancel, confirmation, installed base).
* :mod:`sync.ota.bundle` / :mod:`sync.ota.manifest` / :mod:`sync.ota.swu` -
  the signed bundle format: build and verify.
* :mod:`sync.ota.archive` - allow-listed extraction.
* :mod:`sync.ota.staging` - release folders and the updater's activation request.
* :mod:`sync.ota.window` - maintenance windows, meal service, the payment flag.
* :mod:`sync.ota.agent` - one poll cycle at a time, for ``care-terminal agent``.
* :mod:`sync.ota.health` - the health report the updater waits for.
* :mod:`sync.ota.provision` - device key pair, registration, configs, hardware check.

Activation and rollback live in ``deploy/updater`` (standard library only).
"""
