"""Reading a YAML file the one strict way: safe loader, UTF-8, no duplicate keys, errors as text.

Every room that reads YAML (route tables, rules, the configuration) reads it here, so a file is
refused for the same reasons everywhere, with a message naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """The file cannot be read as YAML; the message names the file and what is wrong."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a mapping that names a key twice is an error, not a silent override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
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


def load_yaml(path: Path | str) -> Any:
    """The document in ``path`` (None for an empty file)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise YamlFileError(f"{path}: is a folder, not a file") from None
    except FileNotFoundError:
        raise YamlFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise YamlFileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{path}: {' '.join(str(exc).split())}") from None
