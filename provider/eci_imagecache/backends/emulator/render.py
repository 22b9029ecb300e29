"""Answers on the wire: JSON, or XML when a request asks ``Format=XML`` (as the gateway does).

The gateway's XML names the root after the action (``<DescribeImageCachesResponse>``; errors
``<Error>``), writes each key as an element and a list as the key's element repeated once per
item, so ``{"ImageCaches": [a, b]}`` is ``<ImageCaches>a</ImageCaches><ImageCaches>b</ImageCaches>``
(what the Go SDK's ``xml:"ImageCaches"`` slices read back).
"""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

JSON_TYPE = "application/json;charset=utf-8"
XML_TYPE = "text/xml;charset=utf-8"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _fill(element: ElementTree.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            for one in item if isinstance(item, list) else [item]:
                _fill(ElementTree.SubElement(element, str(key)), one)
    else:
        element.text = _text(value)


def to_xml(root: str, payload: dict[str, Any]) -> bytes:
    element = ElementTree.Element(root)
    _fill(element, payload)
    body: bytes = ElementTree.tostring(element, encoding="UTF-8", xml_declaration=True)
    return body


def render(payload: dict[str, Any], fmt: str, root: str) -> tuple[bytes, str]:
    """The body and its content type: XML under ``root`` when ``fmt`` is XML, else JSON."""
    if fmt == "XML":
        return to_xml(root, payload), XML_TYPE
    return json.dumps(payload).encode(), JSON_TYPE
