"""The two images' Dockerfiles name only what exists, and agree with the chart and the operator.

These checks need no container engine (tests/images/ builds and runs the images where
one exists): every file a Dockerfile copies exists in its build context
and is not excluded by .dockerignore; every command an image or a pod runs is a file
the image gets or a console script of the package; the uids and ports the images use
are the ones the chart and the operator's builders expect; the base is pinned.
The contexts are read from scripts/images, so they are the ones every build uses.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest

from tests.support.chart import ROOT, default_values, one, render
from visitor_sync_operator.builders import importer, sftp
from visitor_sync_operator.cli import main as cli
from visitor_sync_operator.district import District
from visitor_sync_operator.settings import OperatorSettings

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [args for word, args in self.instructions if word == keyword]
        return found[-1] if found else None


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile (continuations joined, global ARGs substituted)."""
    logical = re.sub(r"\\\n", " ", text)
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, args = line.partition(" ")
        word, args = word.upper(), args.strip()
        if word == "FROM":
            parts = args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: arguments[m.group(1) or m.group(2)], parts[0])
            stages.append(Stage(base, parts[2] if len(parts) == 3 else None))
        elif word == "ARG" and not stages:
            name, _, default = args.partition("=")
            arguments[name] = default
        elif stages:
            stages[-1].instructions.append((word, args))
    return stages


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY/ADD from the build context."""
    found = []
    for word, args in stage.instructions:
        if word not in ("COPY", "ADD"):
            continue
        parts = shlex.split(args)
        if any(part.startswith("--from=") for part in parts):
            continue
        paths = [part for part in parts if not part.startswith("--")]
        found.append((paths[:-1], paths[-1]))
    return found


def exec_form(args: str | None) -> list[str]:
    assert args is not None and args.startswith("["), "use the exec form (no shell)"
    return json.loads(args)


def build_contexts() -> dict[str, str]:
    """Dockerfile -> context directory, from scripts/images' build lines (what the
    Makefile, the image tests and the e2e tier build with)."""
    script = (ROOT / "scripts" / "images").read_text()
    contexts = {}
    for dockerfile, context in re.findall(
            r'^build "\$\w+" "\$repo_root/([^"]+)" "\$repo_root/?([^"]*)"', script,
            re.MULTILINE):
        contexts[dockerfile] = context or "."
    return contexts


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` leave ``path`` out (last match wins; a pattern
    that matches a parent directory matches everything under it)."""
    parents = [str(p) for p in reversed(PurePosixPath(path).parents) if str(p) != "."]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, candidate) for candidate in [*parents, path]):
            excluded = not negated
    return excluded


CONTEXTS = build_contexts()
OPERATOR_DOCKERFILE = "Dockerfile"
SFTP_DOCKERFILE = "images/sftp/Dockerfile"


def test_the_build_script_builds_both_images() -> None:
    assert CONTEXTS == {OPERATOR_DOCKERFILE: ".", SFTP_DOCKERFILE: "images/sftp"}


@pytest.mark.parametrize("dockerfile", sorted(CONTEXTS))
def test_every_copied_file_is_in_the_build_context(dockerfile) -> None:
    context = ROOT / CONTEXTS[dockerfile]
    ignore_file = context / ".dockerignore"
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")] if ignore_file.exists() else []
    stages = parse((ROOT / dockerfile).read_text())
    sources = [source for stage in stages for paths, _ in copies(stage) for source in paths]
    assert sources
    for source in sources:
        assert (context / source).exists(), f"{dockerfile}: COPY {source}: no such file"
        assert not ignored(source.rstrip("/"), patterns), f"{source} is in .dockerignore"


def test_dockerignore_matcher_follows_dockers_rules() -> None:
    """The matcher above must be able to say no, or the test before it proves nothing."""
    patterns = ["*", "!importer/", "**/__pycache__"]
    assert ignored("tests/test_images.py", patterns)
    assert not ignored("importer/visitor_sync/cli.py", patterns)
    assert ignored("importer/visitor_sync/__pycache__", patterns)


def test_operator_image_gets_everything_the_wheel_is_built_from() -> None:
    stages = parse((ROOT / OPERATOR_DOCKERFILE).read_text())
    copied = {source.rstrip("/") for paths, _ in copies(stages[0]) for source in paths}
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"],
              *PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]}
    assert needed <= copied


def test_operator_image_runs_the_package_console_script_as_the_charts_user() -> None:
    stages = parse((ROOT / OPERATOR_DOCKERFILE).read_text())
    final = stages[-1]
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    assert entrypoint == ["visitor-sync"] and entrypoint[0] in SCRIPTS
    assert not [word for word, _ in final.instructions if word == "RUN"], (
        "the final stage adds nothing to the base but the virtualenv")
    user = final.last("USER")
    assert user is not None
    uid, _, gid = user.partition(":")
    assert int(uid) == int(gid) == default_values()["operator"]["runAsUser"] == importer.RUN_AS
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)


def test_operator_image_base_is_an_exact_python_release() -> None:
    stages = parse((ROOT / OPERATOR_DOCKERFILE).read_text())
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    for stage in stages:
        match = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?",
                             stage.base)
        assert match, f"{stage.base} is not an exact python:X.Y.Z-slim-bookworm"
        assert match.group(1) == minimum
    assert len({stage.base for stage in stages}) == 1, "build and run on the same Python"


def test_commands_the_pods_run_are_the_images_console_script() -> None:
    """The chart's Deployment and the operator's importer Jobs call `visitor-sync <cmd>`."""
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    district = District.from_body({"metadata": {"name": "springfield", "namespace": "d",
                                                "uid": "u", "generation": 1},
                                   "spec": {"districtId": "springfield",
                                            "displayName": "Springfield"}})
    cron = importer.cron_job(district, OperatorSettings(), "0 * * * *", False)
    job = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    for command in (container["command"], job["command"]):
        assert command[0] in SCRIPTS
        assert command[1] in cli.commands, f"visitor-sync has no {command[1]} command"


def test_sftp_image_entrypoint_and_its_relay_are_copied_in() -> None:
    stages = parse((ROOT / SFTP_DOCKERFILE).read_text())
    final = stages[-1]
    entrypoint = exec_form(final.last("ENTRYPOINT"))[0]
    destinations = {dest: sources for sources, dest in copies(final)}
    assert entrypoint in destinations
    # entrypoint.sh runs syslog-relay.pl from its own directory.
    directory = PurePosixPath(entrypoint).parent
    assert str(directory / "syslog-relay.pl") in destinations
    for sources in destinations.values():
        assert all((ROOT / "images" / "sftp" / source).is_file() for source in sources)


def test_sftp_image_exposes_the_port_the_operator_targets() -> None:
    stages = parse((ROOT / SFTP_DOCKERFILE).read_text())
    assert stages[-1].last("EXPOSE") == str(sftp.CONTAINER_PORT)
