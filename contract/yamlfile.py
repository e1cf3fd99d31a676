"""Reading a YAML file the one strict way: safe loader, UTF-8, no duplicate keys, errors as text.

Every room that reads YAML (route tables, rules, the configuration) reads it here, so a file is
refused for the same reasons everywhere, with a message naming the file and the line.

Anchors, aliases and merge keys (``<<: *defaults``) are plain YAML and read as such, but what they
expand to is bounded: a few lines of aliases of aliases ("billion laughs") name billions of
values, and a rule query or a list of paths built from them would be walked, copied and sent
whole. A document deeper than :data:`MAX_DEPTH` or larger than :data:`MAX_NODES` once expanded,
or an alias inside the very node it names, is refused before anything is built from it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 16 * 1024 * 1024  # a configuration, a route table or a rule file; the largest we ship is 500 KB
MAX_DEPTH = 100  # nested mappings and lists; the deepest file we ship is a dozen levels deep
MAX_NODES = 200_000  # values once every alias is expanded; the largest file we ship holds 15,000

_MERGE = "tag:yaml.org,2002:merge"
_STANDARD_TAG = "tag:yaml.org,2002:"


class YamlFileError(ValueError):
    """The file cannot be read as YAML; the message names the file and what is wrong."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a mapping that names a key twice is an error, not a silent override.

    Merge keys (``<<``) are left to the safe loader, which lets the mapping's own keys override
    what is merged; only the keys the mapping itself writes must be unique."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base constructor says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A date that does not exist (``2026-02-30``) is an error naming its line, not a crash."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a date ({exc})", node.start_mark) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _UniqueKeyLoader.construct_yaml_timestamp)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def check_bounds(root: yaml.Node, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Refuse (ValueError, naming the line) a composed document that nests deeper than
    ``max_depth``, holds an alias inside the node it names, or expands to more than ``max_nodes``
    values. Walked without recursion; a node named by many aliases is sized once."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if done:
            open_nodes.discard(id(node))
            total = 1 + sum(size[id(child)] for child in _children(node))
            if total > max_nodes:
                raise ValueError(f"{_line(node)}: more than {max_nodes} values once its aliases are expanded")
            size[id(node)] = total
            continue
        if id(node) in size:
            continue
        if id(node) in open_nodes:
            raise ValueError(f"{_line(node)}: an alias names the node that holds it")
        if depth > max_depth:
            raise ValueError(f"{_line(node)}: nested more than {max_depth} levels deep")
        open_nodes.add(id(node))
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """PyYAML's error as one clause: ``line 3, column 5: duplicate key 'x'``, without its copy of
    the line and its name for the text (``"<unicode string>"``)."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, such as ESC
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return f"line {line}, column {column}: character #x{exc.character:04x} is not allowed in YAML" \
            if isinstance(exc.character, int) else f"line {line}, column {column}: {exc.reason}"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    if exc.problem == "but found another document":
        mark = exc.problem_mark
        return f"line {mark.line + 1 if mark else '?'}: a second document (after ---): the file holds one"
    problem = " ".join((exc.problem or "").split())
    if problem.startswith("could not determine a constructor for the tag "):
        tag = problem.removeprefix("could not determine a constructor for the tag ").strip("'")
        shown = "!!" + tag.removeprefix(_STANDARD_TAG) if tag.startswith(_STANDARD_TAG) else tag
        problem = f"the tag {shown} is not plain YAML (no tags are read)"
    context = " ".join((exc.context or "").split())
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if context and exc.context_mark is not None and exc.problem_mark is not None \
            and exc.context_mark.line != exc.problem_mark.line:
        context = f"{context} (line {exc.context_mark.line + 1})"
    return f"{where}{context + ': ' if context else ''}{problem}"


def _read(path: Path) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_BYTES`: a pipe would block the read, a
    device (``/dev/zero``) never end it. Opened without blocking, so a FIFO is refused, not waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file (a pipe, socket or device)")
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise OSError(0, f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return data


def load_yaml(path: Path | str) -> Any:
    """The document in ``path`` (None for an empty file)."""
    try:
        text = _read(Path(path)).decode("utf-8")
    except IsADirectoryError:
        raise YamlFileError(f"{path}: is a folder, not a file") from None
    except FileNotFoundError:
        raise YamlFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise YamlFileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    loader = None
    try:
        loader = _UniqueKeyLoader(text)  # a SafeLoader subclass; it refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        check_bounds(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{path}: {_yaml_problem(exc, text)}") from None
    except ValueError as exc:
        raise YamlFileError(f"{path}: {exc}") from None
    except RecursionError:  # nesting the composer cannot follow, before the bounds are checked
        raise YamlFileError(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()
