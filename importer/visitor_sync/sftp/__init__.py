"""A district's SFTP drop box: the OpenSSH server's configuration and the importer's client.

``server`` renders the hardened ``sshd_config`` (pure, used by the operator for the
ConfigMap), ``keys`` and ``credentials`` make and describe the secrets the server
runs with, ``source`` is the importer's :class:`~visitor_sync.sources.Source` over
SFTP and ``factory`` turns the CLI's ``--source`` into an open source.
"""
