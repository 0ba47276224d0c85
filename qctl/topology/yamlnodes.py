"""YAML to a small tree that remembers where every value came from.

PyYAML's composer gives nodes with marks; we turn them into maps, sequences and scalars
that carry a ``Location``, reject duplicate keys (PyYAML silently keeps the last one),
expand ``${VAR}`` in values, and guard against alias bombs and cycles. Nothing here
raises: every problem becomes a ``FileIssue`` so the user sees all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from qctl.topology.model import FileIssue, Location

#: Upper bounds that keep a hostile file (alias bombs, deep nesting) cheap to reject.
MAX_NODES = 200_000
MAX_DEPTH = 40

_VAR_RE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class YNode:
    loc: Location


@dataclass
class YScalar(YNode):
    value: Any = None
    #: The value could not be read (already reported): checks skip it silently.
    broken: bool = False


@dataclass
class YSeq(YNode):
    items: list[YNode] = field(default_factory=list)


@dataclass
class YMap(YNode):
    #: key -> (location of the key, value)
    entries: dict[str, tuple[Location, YNode]] = field(default_factory=dict)

    def get(self, key: str) -> YNode | None:
        entry = self.entries.get(key)
        return entry[1] if entry else None

    def key_loc(self, key: str) -> Location:
        entry = self.entries.get(key)
        return entry[0] if entry else self.loc


def describe(node: YNode) -> str:
    """How a wrong value is named in messages: "a list", "a mapping", "the string 'x'"."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    assert isinstance(node, YScalar)
    value = node.value
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    return f"a {type(value).__name__}"


class _Builder:
    def __init__(
        self,
        path: str,
        loader: yaml.SafeLoader,
        environ: Mapping[str, str],
        issues: list[FileIssue],
    ) -> None:
        self.path = path
        self.loader = loader
        self.environ = environ
        self.issues = issues
        self.budget = MAX_NODES
        self.exhausted = False

    def loc(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.path, mark.line + 1, mark.column + 1)

    def error(self, loc: Location, message: str) -> None:
        self.issues.append(FileIssue(loc, message))

    def build(self, node: yaml.Node, depth: int = 0) -> YNode | None:
        self.budget -= 1
        if self.budget < 0:
            if not self.exhausted:
                self.exhausted = True
                self.error(
                    self.loc(node),
                    f"the file expands to more than {MAX_NODES} values (alias bomb?)",
                )
            return None
        if depth > MAX_DEPTH:
            self.error(self.loc(node), f"nesting deeper than {MAX_DEPTH} levels (recursive alias?)")
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            seq = YSeq(self.loc(node))
            for item in node.value:
                built = self.build(item, depth + 1)
                if built is not None:
                    seq.items.append(built)
            return seq
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, depth)
        self.error(self.loc(node), "unsupported YAML node")
        return None

    def mapping(self, node: yaml.MappingNode, depth: int) -> YMap | None:
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)  # resolves "<<" merge keys in place
        except yaml.YAMLError as exc:
            self.error(self.loc(node), _yaml_problem(exc))
            return None
        # flatten_mapping puts merged entries first; later entries override them.
        merged = len(node.value) - explicit
        result = YMap(self.loc(node))
        from_merge: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key_loc = self.loc(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_loc, "mapping keys must be plain strings, not lists or mappings")
                continue
            key = str(key_node.value)
            if index < merged:
                from_merge.add(key)
            elif key in from_merge:
                from_merge.discard(key)
                result.entries.pop(key, None)
            if key in result.entries and index < merged:
                result.entries.pop(key)
            if key in result.entries:
                first = result.entries[key][0]
                self.error(key_loc, f"duplicate key {key!r} (first given at line {first.line})")
                continue
            value = self.build(value_node, depth + 1)
            if value is not None:
                result.entries[key] = (key_loc, value)
        return result

    def scalar(self, node: yaml.ScalarNode) -> YScalar | None:
        loc = self.loc(node)
        if node.tag == _STR_TAG and "$" in node.value:
            expanded = self.expand(node.value, loc)
            if expanded is None:
                return YScalar(loc, node.value, broken=True)
            if not node.style and expanded != node.value:  # plain: None, or "" from libyaml
                # A plain scalar reads as what the variable holds: `partitions: ${N}` is
                # an integer when N=6, exactly as if 6 had been written.
                tag = self.loader.resolve(yaml.ScalarNode, expanded, (True, False))  # type: ignore[no-untyped-call]
                node = yaml.ScalarNode(tag, expanded, node.start_mark, node.end_mark)
            else:
                return YScalar(loc, expanded)
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception as exc:  # a malformed timestamp, binary, ... must not escape
            self.error(loc, f"cannot read this value: {_yaml_problem(exc)}")
            return None
        return YScalar(loc, value)

    def expand(self, text: str, loc: Location) -> str | None:
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # $${VAR} is a literal ${VAR}
                return match.group(0)[1:]
            name = match.group(2)
            if name not in self.environ:
                missing.append(name)
                return match.group(0)
            return self.environ[name]

        result = _VAR_RE.sub(replace, text)
        if missing:
            self.error(
                loc,
                f"environment variable {missing[0]} is not set "
                f"(set it, or write $${{{missing[0]}}} for a literal ${{{missing[0]}}})",
            )
            return None
        return result


#: libyaml's parser when PyYAML was built with it (30x faster than pure Python: a plan of
#: a 1,000-object file must not spend a second parsing), with the same nodes and marks.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(
    text: str, path: str, environ: Mapping[str, str], issues: list[FileIssue]
) -> YNode | None:
    """Parse YAML text into a located tree; problems are appended to ``issues``."""
    try:
        loader = _LOADER(text)
    except yaml.reader.ReaderError as exc:  # a control character anywhere in the text
        issues.append(_reader_issue(text, path, exc))
        return None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path, 1, 1)
            issues.append(FileIssue(loc, f"invalid YAML: {_yaml_problem(exc)}"))
            return None
        except yaml.reader.ReaderError as exc:
            issues.append(_reader_issue(text, path, exc))
            return None
        except yaml.YAMLError as exc:
            issues.append(FileIssue(Location(path, 1, 1), f"invalid YAML: {_yaml_problem(exc)}"))
            return None
        if node is None:
            issues.append(FileIssue(Location(path, 1, 1), "the file is empty"))
            return None
        return _Builder(path, loader, environ, issues).build(node)
    finally:
        loader.dispose()


def _reader_issue(text: str, path: str, exc: yaml.reader.ReaderError) -> FileIssue:
    if _LOADER is not yaml.SafeLoader:  # libyaml counts UTF-8 bytes
        before = text.encode("utf-8", "surrogatepass")[: max(0, int(exc.position))].decode(
            "utf-8", "ignore"
        )
    else:
        before = text[: max(0, min(int(exc.position), len(text)))]
    position = len(before)
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    char = exc.character
    shown = f"#x{ord(char):04x}" if isinstance(char, str) else repr(char)
    return FileIssue(
        Location(path, line, column),
        f"invalid YAML: the character {shown} is not allowed in a YAML file",
    )


def _yaml_problem(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        text = ", ".join(parts) if parts else str(exc)
    else:
        text = str(exc)
    return " ".join(text.split())
