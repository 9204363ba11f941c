"""Just enough of a PromQL reader to list the metrics and label matchers a query uses.

The monitoring tests check that alert rules and dashboard panels only name series the
operator exports. A regular expression over the whole query confuses function names,
grouping labels (``by (namespace)``), durations (``26h``) and quoted values with metric
names, so the query is tokenised first and read with the few rules that tell them apart:

- an identifier followed by ``(`` (or ``by``/``without``) is a function or an aggregation;
- ``by``, ``without``, ``on``, ``ignoring``, ``group_left`` and ``group_right`` are followed
  by a list of label names;
- ``{...}`` holds label matchers, ``[...]`` a range, quotes a string;
- keywords (``and``, ``offset``, ``bool``...) are not metrics;
- any other identifier is a metric name, possibly followed by its matchers.

Grafana template variables (``$namespace``, ``${datasource}``, ``$__range``) are tokens of
their own, so a query is readable before Grafana substitutes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]+\}|\$\w+|\[\[\w+\]\])
  | (?P<number>(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<matchop>=~|!~|!=|==|<=|>=)
  | (?P<punct>[-+*/%^<>=(){}\[\],])
""", re.VERBOSE)

GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = GROUPING | {"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan", "start",
                       "end"}


@dataclass
class Selector:
    """One vector selector: a metric name and its label matchers ``label -> (op, value)``."""

    metric: str
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class Query:
    """What a query refers to: its selectors and the labels it groups or matches on."""

    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {selector.metric for selector in self.selectors}


def tokenize(expr: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pairs without whitespace; an unknown character is an error."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read PromQL at {expr[position:position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def _unquote(text: str) -> str:
    return text[1:-1]


def _until(tokens: list[tuple[str, str]], start: int, closing: str) -> int:
    """Index of the token that closes the bracket opened just before ``start``."""
    for index in range(start, len(tokens)):
        if tokens[index] == ("punct", closing):
            return index
    raise ValueError(f"unbalanced PromQL: no {closing!r}")


def parse(expr: str) -> Query:
    """The selectors and grouping labels of ``expr`` (see the module docstring)."""
    tokens = tokenize(expr)
    query = Query()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in GROUPING and following == ("punct", "("):
            end = _until(tokens, index + 2, ")")
            query.grouping_labels.update(name for token_kind, name in tokens[index + 2:end]
                                         if token_kind == "ident")
            index = end + 1
        elif kind == "ident" and (following == ("punct", "(")
                                  or following in (("ident", "by"), ("ident", "without"))):
            index += 1  # a function or an aggregation: its arguments follow
        elif kind == "ident" and text not in KEYWORDS:
            selector = Selector(text)
            index += 1
            if following == ("punct", "{"):
                index = _matchers(tokens, index + 1, selector) + 1
            query.selectors.append(selector)
        elif (kind, text) == ("punct", "{"):
            raise ValueError(f"selector without a metric name in {expr!r}")
        elif (kind, text) == ("punct", "["):
            index = _until(tokens, index + 1, "]") + 1
        else:
            index += 1
    return query


def _matchers(tokens: list[tuple[str, str]], index: int, selector: Selector) -> int:
    """Read ``label op "value", ...`` into ``selector``; return the index of ``}``."""
    while tokens[index] != ("punct", "}"):
        if tokens[index] == ("punct", ","):
            index += 1
            continue
        (label_kind, label), (_, op), (value_kind, value) = tokens[index:index + 3]
        if label_kind != "ident" or op not in {"=", "!=", "=~", "!~"}:
            raise ValueError(f"cannot read label matcher {label}{op}{value}")
        selector.matchers[label] = (op, _unquote(value) if value_kind == "string" else value)
        index += 3
    return index
