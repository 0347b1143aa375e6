"""A release's document, and the two pure operations on documents: merge patch and diff.

A release's document is what a full deployment request gives, less its `message`: the
container spec stored with the release, and the `strategy` and `hosts` selector of the deploy
that created it. A request with `"base"` is a JSON merge patch (RFC 7396) on the base
release's document; `GET /v1/apps/{app}/releases/{n}/diff` and a dry run answer the diff of
two documents. No I/O here: data in, data out.

The merge patch is RFC 7396's ten-line algorithm, written out rather than taken from a
package: the one on PyPI (json-merge-patch) implements the RFC it obsoletes and is barely
maintained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["add", "remove", "change"]


def document(
    spec: dict[str, Any], strategy: dict[str, Any] | None, selector: dict[str, Any] | None
) -> dict[str, Any]:
    """A release's document: its spec, with the strategy and the host selector (None: every
    host) of the deploy that created it."""
    out = dict(spec)
    out["strategy"] = dict(strategy) if strategy else None
    out["hosts"] = dict(selector) if selector else None
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: `patch` applied to `target` (neither is changed). An object in the patch
    merges into the target's object, key by key; `null` removes a key; anything else (an
    array too) replaces the target's value."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True)
class Change:
    """One difference between two documents, at a JSON Pointer (RFC 6901) path."""

    path: str
    op: Op
    old: Any = None
    new: Any = None


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    """What changed from `old` to `new`, in path order: objects are compared key by key (a
    key whose value is null counts as absent), anything else (an array too) as a whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[Change] = []
        for key in sorted(set(old) | set(new)):
            here = f"{path}/{_escape(str(key))}"
            before, after = old.get(key), new.get(key)
            if before is None and after is None:
                continue
            if before is None:
                changes.append(Change(here, "add", new=after))
            elif after is None:
                changes.append(Change(here, "remove", old=before))
            else:
                changes.extend(diff(before, after, here))
        return changes
    if old == new and isinstance(old, bool) == isinstance(new, bool):  # 60 == 60.0, 1 != True
        return []
    return [Change(path or "/", "change", old, new)]


def _escape(key: str) -> str:
    """A key as one JSON Pointer reference token."""
    return key.replace("~", "~0").replace("/", "~1")
