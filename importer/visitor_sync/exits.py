"""The importer's exit statuses: a contract with the Job that runs it and the operator
that reads how it ended (README's table; ``tests/test_exit_codes.py`` runs each).

Dependency-free, so that the operator can name them without loading the importer.
"""

from __future__ import annotations

import signal

#: The run completed, whatever the data said (the errors are in the report).
EXIT_OK = 0
#: The database could not be used, at start or mid-run (the file in progress stays).
EXIT_DATABASE = 1
#: A usage error: bad options or ImportConfig. Retrying cannot help: the Job's
#: podFailurePolicy fails at once on it.
EXIT_USAGE = 2
#: The SFTP server could not be used (EX_UNAVAILABLE: try again later).
EXIT_UNAVAILABLE = 69
#: Another run holds the district (EX_TEMPFAIL: try again later).
EXIT_BUSY = 75
#: Stopped by SIGTERM (128 + 15, as a shell reports it): deadline, eviction, drain.
EXIT_TERMINATED = 128 + signal.SIGTERM

#: What each status means, for a run that ended without a summary.
MEANINGS = {
    EXIT_DATABASE: "the database failed or the importer crashed",
    EXIT_USAGE: "the importer's configuration or arguments are invalid",
    EXIT_UNAVAILABLE: "the SFTP server could not be used",
    EXIT_BUSY: "another run held the district",
    128 + signal.SIGKILL: "killed",
    EXIT_TERMINATED: "stopped (SIGTERM: deadline or eviction)",
}
