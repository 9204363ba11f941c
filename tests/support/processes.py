"""The importer as a process of its own, to kill, stop or watch from a test.

:func:`start_command` runs the installed ``visitor-sync`` console script (what a
Job runs). Starting it costs the interpreter and the imports (1 to 2 s on a busy
machine), so tests that need dozens of runs use a :class:`Launcher`: a
``multiprocessing`` fork server that imported the CLI once and forks each run
from there, running the same ``main`` with the same arguments in a fresh process.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")

#: The console script of the environment running the tests (never another install's).
COMMAND = str(Path(sys.executable).with_name("visitor-sync"))


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0,
             interval: float = 0.01) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def reading_a_file(scratch: Path) -> bool:
    """Whether a run whose ``$TMPDIR`` is ``scratch`` has fetched an inbox file (the
    importer reads a private copy in a ``visitor-sync-*`` folder there)."""
    return any(scratch.glob("visitor-sync-*/*"))


class Process(Protocol):
    pid: int

    def wait(self, timeout: float) -> int:
        """Exit status as ``subprocess`` reports it (``-N`` when killed by signal N)."""


@dataclass
class Run:
    """One started importer: its process and where its output goes."""

    process: Process
    stdout: Path
    stderr: Path

    def finish(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)

    def signal(self, number: int) -> None:
        """Send signal ``number``; a run that has already ended and been reaped is left be."""
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, number)

    @property
    def err(self) -> str:
        """What the run wrote to stderr (nothing when it died before redirecting it)."""
        return self.stderr.read_text(encoding="utf-8", errors="replace") \
            if self.stderr.exists() else ""


class _Popen:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)


def start_command(arguments: Sequence[str], output: Path,
                  environment: dict[str, str] | None = None) -> Run:
    """``visitor-sync ARGUMENTS`` as a subprocess, its output in files under ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    stdout, stderr = output / "stdout", output / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        popen = subprocess.Popen([COMMAND, *arguments], stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL,
                                 env={**os.environ, **(environment or {})})
    return Run(_Popen(popen), stdout, stderr)


def _main_in_child(arguments: list[str], stdout: str, stderr: str,
                   environment: dict[str, str]) -> None:
    """What a forked run executes: the CLI's ``main``, output redirected like a shell would."""
    from visitor_sync_operator.cli import main

    os.environ.update(environment)
    tempfile.tempdir = None  # computed again from $TMPDIR
    for path, descriptor in ((stdout, 1), (stderr, 2)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, descriptor)
        os.close(target)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child's whole life
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    main(arguments, prog_name="visitor-sync")


class _Forked:
    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process
        assert process.pid is not None
        self.pid = process.pid

    def wait(self, timeout: float) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("visitor-sync", timeout)
        return self.process.exitcode


class Launcher:
    """Forks importer runs from a server that has the CLI imported (a run starts in ms)."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["visitor_sync_operator.cli"])

    def start(self, arguments: Sequence[str], output: Path,
              environment: dict[str, str] | None = None) -> Run:
        output.mkdir(parents=True, exist_ok=True)
        stdout, stderr = output / "stdout", output / "stderr"
        process = self.context.Process(target=_main_in_child, args=(
            list(arguments), str(stdout), str(stderr), environment or {}))
        process.start()
        return Run(_Forked(process), stdout, stderr)
