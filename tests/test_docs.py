"""docs/formats.md must say what the code does.

The generated block is compared with ``render_formats()``; the error-code table
is checked against every code literal the importer source emits, found by
reading the source (an AST walk rather than a line grep, so calls spanning
several lines are seen too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic_core import PydanticCustomError

from visitor_sync import formatdoc
from visitor_sync.config import ImportConfig, Limits
from visitor_sync.filetypes import FILE_TYPES
from visitor_sync.formatdoc import (
    ERROR_CODES,
    REGENERATE,
    VALUE_FORMATS,
    Kind,
    generated_block,
    render_file_type,
    render_formats,
    replace_generated,
    write_formats,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "formats.md"
SOURCE = ROOT / "importer" / "visitor_sync"
_CODE = re.compile(r"[a-z]+(?:_[a-z0-9]+)+|[a-z]+")

#: Calls whose first argument is an error code, and what the code does to the file.
_FIRST_ARGUMENT = {"invalid": Kind.ROW, "one_of": Kind.ROW, "PydanticCustomError": Kind.ROW,
                   "FileRejected": Kind.FILE}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and _CODE.fullmatch(node.value):
        return node.value
    return None


def _positional_or_keyword(call: ast.Call, index: int, keyword: str) -> str | None:
    if len(call.args) > index:
        return _literal(call.args[index])
    return next((_literal(item.value) for item in call.keywords if item.arg == keyword), None)


def _codes_in(tree: ast.AST) -> list[tuple[str, Kind, int]]:
    found: list[tuple[str, Kind, int]] = []

    def add(code: str | None, kind: Kind, node: ast.AST) -> None:
        if code is not None:
            found.append((code, kind, getattr(node, "lineno", 0)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            last = name.rsplit(".", 1)[-1]
            if last in _FIRST_ARGUMENT:
                add(_positional_or_keyword(node, 0, "code"), _FIRST_ARGUMENT[last], node)
            elif name == "Issue.warning":
                add(_positional_or_keyword(node, 1, "code"), Kind.WARNING, node)
            elif last == "Reference":
                add(_positional_or_keyword(node, 2, "code"), Kind.ROW, node)
            elif last == "Issue":
                add(_positional_or_keyword(node, 99, "code"), Kind.ROW, node)
            elif last == "append" and len(node.args) == 1 \
                    and isinstance(node.args[0], ast.Tuple) and len(node.args[0].elts) == 4:
                # (code, reason, line, column): a problem for FileRejected.all_of
                add(_literal(node.args[0].elts[0]), Kind.FILE, node)
        elif isinstance(node, ast.Assign):
            # ``code = "invalid_value"`` / ``code, message = "missing_value", "..."``
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "code":
                    add(_literal(node.value), Kind.ROW, node)
                elif isinstance(target, ast.Name) and target.id == "conflict_code":
                    add(_literal(node.value), Kind.FILE, node)  # a container's conflict rule
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for element, value in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(element, ast.Name) and element.id == "code":
                            add(_literal(value), Kind.ROW, node)
    return found


def emitted_codes() -> dict[str, set[Kind]]:
    """Every code literal the importer source emits, with the kinds of its call sites."""
    codes: dict[str, set[Kind]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        if "migrations" in path.parts or path.name == "formatdoc.py":
            continue
        for code, kind, _line in _codes_in(ast.parse(path.read_text(), str(path))):
            codes.setdefault(code, set()).add(kind)
    return codes


def test_generated_block_is_up_to_date() -> None:
    block = generated_block(DOC.read_text(encoding="utf-8"))
    assert block == render_formats(), (
        f"docs/formats.md is out of date with the file type declarations; regenerate it "
        f"with:\n    {REGENERATE}")


def test_the_source_scan_finds_codes_of_every_kind_of_call_site() -> None:
    """Guards the scanner itself: a broken scan would make the completeness test vacuous."""
    found = emitted_codes()
    for code in ("invalid_date",  # values.invalid
                 "invalid_role",  # one_of
                 "missing_column", "duplicate_column",  # FileRejected.all_of problems
                 "unrecognised_file",  # FileRejected
                 "wrong_field_count",  # Issue(code=...)
                 "invalid_value", "missing_value",  # code = ... in validation
                 "unknown_column", "conflicting_values",  # Issue.warning
                 "unknown_student"):  # Reference
        assert code in found, f"the source scan no longer finds {code!r}"


def test_every_emitted_code_is_documented() -> None:
    undocumented = {code: sorted(kind.value for kind in kinds)
                    for code, kinds in emitted_codes().items() if code not in ERROR_CODES}
    assert not undocumented, (
        f"error codes emitted by the importer but missing from "
        f"visitor_sync.formatdoc.ERROR_CODES: {undocumented}; add them, then regenerate "
        f"docs/formats.md with:\n    {REGENERATE}")


def test_documented_codes_are_still_emitted_with_their_kind() -> None:
    emitted = emitted_codes()
    stale = sorted(set(ERROR_CODES) - set(emitted))
    assert not stale, f"documented error codes the importer no longer emits: {stale}"
    wrong = {code: (ERROR_CODES[code][0].value, sorted(kind.value for kind in kinds))
             for code, kinds in emitted.items()
             if code in ERROR_CODES and ERROR_CODES[code][0] not in kinds}
    assert not wrong, f"error codes documented with another kind than emitted: {wrong}"


def test_codes_with_prefixes_of_error_codes_are_documented() -> None:
    """A second, cruder net: code-like literals anywhere in the source (constants too)."""
    pattern = re.compile(r"""["']((?:invalid|unknown|missing|duplicate|conflicting)_[a-z_]+)["']""")
    found = {match for path in SOURCE.rglob("*.py") if "migrations" not in path.parts
             for match in pattern.findall(path.read_text())}
    assert found - set(ERROR_CODES) == set()


@pytest.mark.parametrize("name", sorted(FILE_TYPES))
def test_every_header_and_alias_is_in_the_generated_doc(name: str) -> None:
    file_type = FILE_TYPES[name]
    section = render_file_type(file_type)
    assert section in render_formats()
    for header, aliases in file_type.headers.items():
        for spelling in (header, *aliases):
            assert f"`{spelling}`" in section, f"{name}: {spelling!r} is not documented"
    for file_name in file_type.file_names:
        assert f"`{file_name}`" in section
    for required in file_type.required_headers():
        assert f"| `{required}` | yes |" in section


@pytest.mark.parametrize("converter", list(VALUE_FORMATS), ids=lambda c: c.__name__)
def test_value_format_examples_match_the_converters(converter) -> None:
    known = VALUE_FORMATS[converter]
    for example in known.examples:
        converter(example)
    for bad in known.rejected:
        with pytest.raises(PydanticCustomError):
            converter(bad)


def test_choices_and_defaults_are_documented() -> None:
    text = render_formats()
    for value in ("administrator", "site_administrator", "operator", "teacher", "no_contact",
                  "custody", "restraining", "other", "to_school", "from_school"):
        assert f"`{value}`" in text
    visitors = render_file_type(FILE_TYPES["visitors"])
    assert re.search(r"\| `Can Pickup` \|[^\n]*\| 0 \|", visitors)  # fails closed
    assert re.search(r"\| `Emergency Contact` \|[^\n]*\| 0 \|", visitors)
    assert "`unknown_student`" in visitors


def test_the_intro_states_the_configured_limits() -> None:
    intro = DOC.read_text(encoding="utf-8").split(formatdoc.BEGIN_MARKER)[0]
    words = " ".join(intro.split())
    limits, settings = Limits(), ImportConfig.model_fields
    facts = [f"{limits.max_file_bytes / 1024**3:g} GiB", f"{limits.max_field_chars:,} characters",
             f"{limits.max_rows:,} data rows"]
    facts += [f"`{name}` (default {settings[name].default:g})"
              for name in ("max_deactivate_percent", "held_retention_days",
                           "quiet_period_seconds")]
    for fact in facts:
        assert fact in words, f"the docs/formats.md intro should say {fact!r}"
    for name in Limits.model_fields:
        if name.startswith("zip_"):
            assert f"`limits.{name}`" in words, f"the OneRoster intro should name {name}"


def test_write_formats_rewrites_only_the_generated_block(tmp_path: Path) -> None:
    path = tmp_path / "formats.md"
    path.write_text(f"intro\n{formatdoc.BEGIN_MARKER}\nstale\n{formatdoc.END_MARKER}\noutro\n",
                    encoding="utf-8")
    write_formats(path)
    written = path.read_text(encoding="utf-8")
    assert written.startswith(f"intro\n{formatdoc.BEGIN_MARKER}\n")
    assert written.endswith(f"{formatdoc.END_MARKER}\noutro\n")
    assert generated_block(written) == render_formats()
    assert replace_generated(written, render_formats()) == written


def test_the_source_scan_sees_every_call_form() -> None:
    snippet = '''
raise invalid("code_a", value, "problem")
raise FileRejected(
    "code_b", "reason")
log.add(Issue.warning(name, "code_c", "reason"))
Issue(file=name, line=1,
      code="code_d", reason="r")
Role = one_of("code_e", ROLES)
raise PydanticCustomError("code_f", "message")
Reference("student_id", Student, "code_g", "student")
problems.append(("code_h", "reason", 1, "Header"))
code, message = "code_i", "message"
code = "code_j"
'''
    found = {code: kind for code, kind, _line in _codes_in(ast.parse(snippet))}
    assert found == {"code_a": Kind.ROW, "code_b": Kind.FILE, "code_c": Kind.WARNING,
                     "code_d": Kind.ROW, "code_e": Kind.ROW, "code_f": Kind.ROW,
                     "code_g": Kind.ROW, "code_h": Kind.FILE, "code_i": Kind.ROW,
                     "code_j": Kind.ROW}
