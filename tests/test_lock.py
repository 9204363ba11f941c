"""requirements.lock, the image's pinned dependency set, still answers pyproject.toml.

The Dockerfile installs only the lock (`pip install --require-hashes --no-deps`), so a
dependency added to or tightened in pyproject.toml without `scripts/lock` would make an
image without it (or `pip check` would fail the build, late and on someone else's
machine). These tests say so at once, with the package's name.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.chart import ROOT

LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)", re.MULTILINE)
VIA_PROJECT = "visitor-sync (pyproject.toml)"


def pins(lock_text: str) -> dict[str, str]:
    """Canonical name -> pinned version."""
    return {canonicalize_name(name): version for name, version in PIN.findall(lock_text)}


def direct(lock_text: str) -> set[str]:
    """The pinned packages the lock says pyproject.toml asked for ("# via" annotations)."""
    entries = re.split(r"^(?=[A-Za-z0-9])", lock_text, flags=re.MULTILINE)
    return {canonicalize_name(match.group(1)) for entry in entries
            if (match := PIN.match(entry)) and VIA_PROJECT in entry}


def extra_requirements(requirement: Requirement) -> set[str]:
    """What the requirement's extras add (e.g. psycopg[binary] -> psycopg-binary), read
    from the installed distribution's metadata."""
    found: set[str] = set()
    if not requirement.extras:
        return found
    for line in importlib.metadata.requires(requirement.name) or []:
        needed = Requirement(line)
        if needed.marker and any(needed.marker.evaluate({"extra": extra})
                                 for extra in requirement.extras):
            found.add(canonicalize_name(needed.name))
    return found


def mismatches(dependencies: list[str], lock_text: str) -> list[str]:
    """Every way the lock fails to satisfy ``dependencies``, one message each."""
    pinned, asked = pins(lock_text), set()
    problems = []
    for line in dependencies:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        asked.add(name)
        if name not in pinned:
            problems.append(f"{requirement.name} is not in requirements.lock")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{requirement.name}: locked {pinned[name]} is not "
                            f"{requirement.specifier}")
        problems += [f"{extra} (from {line}) is not in requirements.lock"
                     for extra in sorted(extra_requirements(requirement) - set(pinned))]
    problems += [f"{name} is locked for pyproject.toml, which no longer asks for it"
                 for name in sorted(direct(lock_text) - asked)]
    return problems


DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def test_the_lock_satisfies_pyproject() -> None:
    assert mismatches(DEPENDENCIES, LOCK.read_text()) == [], "run scripts/lock"


def test_every_locked_package_is_exact_and_hashed() -> None:
    text = LOCK.read_text()
    entries = [entry for entry in re.split(r"^(?=[A-Za-z0-9])", text, flags=re.MULTILINE)
               if entry.strip() and not entry.startswith("#")]
    assert len(entries) == len(pins(text)) > len(DEPENDENCIES)
    for entry in entries:
        assert PIN.match(entry), f"not an exact pin: {entry.splitlines()[0]}"
        assert "--hash=sha256:" in entry, f"no hash: {entry.splitlines()[0]}"


def test_a_stale_lock_is_named() -> None:
    """The check can fail: for a new dependency, a tightened one and a dropped one."""
    text = LOCK.read_text()
    pinned = pins(text)
    rich = pinned["rich"]
    kept = [line for line in DEPENDENCIES if not line.startswith("croniter")]
    problems = mismatches([*kept, "left-pad>=1", f"rich>{rich}"], text)
    assert "left-pad is not in requirements.lock" in problems
    assert f"rich: locked {rich} is not >{rich}" in problems
    assert "croniter is locked for pyproject.toml, which no longer asks for it" in problems
    without_binary = re.sub(r"^psycopg-binary==", "psycopg-binary-gone==", text,
                            flags=re.MULTILINE)
    assert any(problem.startswith("psycopg-binary (from psycopg[binary]")
               for problem in mismatches(DEPENDENCIES, without_binary))


def test_the_image_installs_exactly_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock" in dockerfile
    assert re.search(r"pip install --require-hashes --no-deps -r requirements.lock", dockerfile)
    assert "pip check" in dockerfile
