"""The API's shapes as the official SDK states them, read here independently of our code.

Field names come from each model's ``from_map`` source (the keys it reads, and the model each
nested key is read into); "required" and documented limits from the docstring comments above
each attribute in ``__init__`` (the vendor's API reference). Nothing here is typed by hand but
the few limits the reference states in prose, each with where it is stated.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from alibabacloud_eci20180808 import models as sdk
from alibabacloud_eci20180808.client import Client

_GET = re.compile(r"if m\.get\('([^']+)'\) is not None:")
_NESTED = re.compile(r"temp_model = (\w+)\(\)")
_ATTR = re.compile(
    r"self\.(\w+) = m\.get\('([^']+)'\)"
    r"|self\.(\w+) = temp_model\.from_map\(m\['([^']+)'\]\)"
    r"|for k in m\.get\('([^']+)'\)"
)

# action -> (request model, response body model)
ACTIONS: dict[str, tuple[type, type]] = {
    name: (getattr(sdk, f"{name}Request"), getattr(sdk, f"{name}ResponseBody"))
    for name in (
        "CreateImageCache",
        "UpdateImageCache",
        "DescribeImageCaches",
        "DeleteImageCache",
        "ListUsage",
        "CreateContainerGroup",
        "DescribeContainerGroups",
        "DescribeContainerGroupEvents",
        "DeleteContainerGroup",
    )
}

# Limits the reference states in prose (source in the comment). Keys: (action, wire name).
MAX_ITEMS = {
    # "A single image cache can contain a maximum of 20 container images" (overview).
    ("CreateImageCache", "Image"): 20,
    ("UpdateImageCache", "Image"): 20,
    # "Valid values of N: 1 to 20" / "A maximum of 20 tags" (SDK docstrings).
    ("CreateImageCache", "Tag"): 20,
    ("UpdateImageCache", "Tag"): 20,
    ("CreateContainerGroup", "Tag"): 20,
    # "You can specify a maximum of 100 container images" (DescribeImageCaches.MatchImage).
    ("DescribeImageCaches", "MatchImage"): 100,
}
# DescribeContainerGroups: "Limit ... maximum value: 20" (API reference page).
MAX_VALUE = {("DescribeContainerGroups", "Limit"): 20}
# "You can specify up to 20 IDs" (DescribeContainerGroups / DescribeContainerGroupEvents).
MAX_JSON_IDS = {
    ("DescribeContainerGroups", "ContainerGroupIds"): 20,
    ("DescribeContainerGroupEvents", "ContainerGroupIds"): 20,
}


@dataclass(frozen=True)
class Shape:
    keys: dict[str, type | None]  # wire name -> nested model (or None for a value)
    required: frozenset[str]
    docs: dict[str, str]  # wire name -> the vendor's description


def _docs(cls: type) -> dict[str, str]:
    docs, block = {}, []
    for line in inspect.getsource(cls.__init__).splitlines():
        text = line.strip()
        if text.startswith("#"):
            block.append(text.lstrip("#").strip())
        elif m := re.match(r"self\.(\w+) = \1$", text):
            docs[m[1]] = "\n".join(block)
            block = []
        elif text:
            block = []
    return docs


@cache
def shape(cls: type) -> Shape:
    source = inspect.getsource(cls.from_map)
    keys: dict[str, type | None] = {}
    attrs: dict[str, str] = {}
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if m := _GET.search(line):
            key = m[1]
            nested = None
            for follow in lines[i + 1 : i + 3]:
                if n := _NESTED.search(follow):
                    nested = getattr(sdk, n[1])
            keys[key] = nested
        if m := _ATTR.search(line):
            attr, key = (m[1], m[2]) if m[1] else (m[3], m[4]) if m[3] else (None, m[5])
            if attr:
                attrs[key] = attr
    # Lists of models assign their attribute before the loop: "self.x = []".
    for i, line in enumerate(lines):
        if (m := re.match(r"\s*self\.(\w+) = \[\]", line)) and (n := _GET.search(lines[i + 1])):
            attrs[n[1]] = m[1]
    by_attr = _docs(cls)
    docs = {key: by_attr.get(attr, "") for key, attr in attrs.items()}
    required = frozenset(k for k, d in docs.items() if "This parameter is required." in d)
    return Shape(keys, required, docs)


def unknown_keys(cls: type, data: Any, path: str = "") -> list[str]:
    """Keys of ``data`` that the model (recursively) does not read."""
    if not isinstance(data, dict):
        return []
    s, found = shape(cls), []
    for key, value in data.items():
        if key not in s.keys:
            found.append(f"{path}{key}")
            continue
        nested = s.keys[key]
        if nested is None:
            continue
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            found += unknown_keys(nested, item, f"{path}{key}[{i}].")
    return found


def missing_keys(cls: type, data: Any, path: str = "") -> list[str]:
    """Documented keys of the model (recursively, through present items) absent from ``data``."""
    if not isinstance(data, dict):
        return [path or "(answer)"]
    s, found = shape(cls), []
    for key, nested in s.keys.items():
        if key not in data:
            found.append(f"{path}{key}")
            continue
        if nested is None:
            continue
        value = data[key]
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            found += missing_keys(nested, item, f"{path}{key}[{i}].")
    return found


def unflatten(query: dict[str, str]) -> dict[str, Any]:
    """The SDK's flattened query (``Tag.1.Key``) back into nested maps and lists."""
    root: dict[Any, Any] = {}
    for key, value in query.items():
        node = root
        parts = [int(p) if p.isdigit() else p for p in key.split(".")]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def fold(node: Any) -> Any:
        if isinstance(node, dict) and node and all(isinstance(k, int) for k in node):
            return [fold(node[k]) for k in sorted(node)]
        return {k: fold(v) for k, v in node.items()} if isinstance(node, dict) else node

    return fold(root)


class RecordingClient(Client):
    """The official SDK client, keeping each call's flattened query and raw JSON answer."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def call_api(self, params: Any, request: Any, runtime: Any) -> dict:
        answer = super().call_api(params, request, runtime)
        self.calls.append((params.action, dict(request.query or {}), answer.get("body") or {}))
        return answer
