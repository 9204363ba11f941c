"""`visitor-sync --help` and the operator's entry point start without the heavy imports.

Every pod start pays the CLI's imports: in the image, alembic and SQLAlchemy alone were
1.5 s of a 3-6 s `visitor-sync --help`. Commands import what they use; the group and its
options import only click and the ImportConfig contract. Checked in a fresh interpreter,
as the console script runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Packages no command's --help needs (the database layer, SFTP, progress bars, the
#: operator's engine and settings).
HEAVY = ("sqlalchemy", "alembic", "psycopg", "paramiko", "rich", "kopf", "kubernetes",
         "pydantic_settings")

PROBE = """
import json, sys
from visitor_sync_operator.cli import main
try:
    main(sys.argv[1:], prog_name="visitor-sync")
finally:
    print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_packages(*arguments: str, status: int = 0) -> set[str]:
    """The top-level packages loaded by the time ``visitor-sync ARGUMENTS`` exits."""
    result = subprocess.run([sys.executable, "-c", PROBE, *arguments], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == status, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("arguments", [("--help",), ("import", "--help"),
                                       ("validate", "--help"), ("operator", "--help"),
                                       ("demo", "--help")])
def test_help_imports_nothing_heavy(arguments) -> None:
    loaded = loaded_packages(*arguments)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_probe_sees_an_import(tmp_path) -> None:
    """The check above can fail: a command that runs does import the database layer."""
    empty = tmp_path / "students.csv"
    empty.write_text("")
    assert {"sqlalchemy", "alembic"} <= loaded_packages("validate", str(empty), status=1)
