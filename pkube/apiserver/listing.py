"""List options (selectors, paging, resourceVersion) and the list itself.

``ListOptions.parse`` validates the query of a list or watch (400 on bad
input). ``list_objects`` reads pages from the store, filters them by the
selectors, and never skips an object across pages: with selectors it asks the
store only for as many objects as are still missing from the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pkube.api.kinds import ResourceInfo
from pkube.api.selectors import FieldSelector, LabelSelector, SelectorError, parse_field_selector, parse_label_selector
from pkube.apiserver import errors, strategies
from pkube.apiserver.storage.interface import Compacted, ListResult, Storage
from pkube.apiserver.storage.keys import BadStorageRequest

RV_MATCHES = ("NotOlderThan", "Exact")
DEFAULT_WATCH_TIMEOUT = 1800


def _truthy(value: Optional[str]) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes", "")


@dataclass(frozen=True)
class ListOptions:
    """The query of a list or a watch, validated."""

    label_selector: LabelSelector
    field_selector: FieldSelector
    limit: int = 0
    continue_token: Optional[str] = None
    resource_version: Optional[str] = None
    resource_version_match: Optional[str] = None
    watch: bool = False
    allow_bookmarks: bool = False
    timeout_seconds: int = DEFAULT_WATCH_TIMEOUT

    @classmethod
    def parse(cls, info: ResourceInfo, query) -> "ListOptions":
        """From the request's query parameters; 400 BadRequest on anything invalid."""
        try:
            labels = parse_label_selector(query.get("labelSelector", "") or "")
            fields = parse_field_selector(query.get("fieldSelector", "") or "")
        except SelectorError as exc:
            raise errors.bad_request(f"unable to parse requirement: {exc}") from None
        unsupported = sorted(fields.fields() - strategies.supported_fields(info))
        if unsupported:
            raise errors.bad_request(f'field label not supported: {unsupported[0]}')
        rv, match = query.get("resourceVersion") or None, query.get("resourceVersionMatch") or None
        cont = query.get("continue") or None
        _check_versions(rv, match, cont)
        return cls(labels, fields, _non_negative(query, "limit", 0), cont, rv, match,
                   watch=_truthy(query.get("watch")) if "watch" in query else False,
                   allow_bookmarks=_truthy(query.get("allowWatchBookmarks"))
                   if "allowWatchBookmarks" in query else False,
                   timeout_seconds=_non_negative(query, "timeoutSeconds", DEFAULT_WATCH_TIMEOUT)
                   or DEFAULT_WATCH_TIMEOUT)

    @property
    def selects_all(self) -> bool:
        return self.label_selector.empty and self.field_selector.empty

    def matches(self, info: ResourceInfo, obj: dict) -> bool:
        md = obj.get("metadata") or {}
        if not self.label_selector.matches(md.get("labels") or {}):
            return False
        return self.field_selector.empty or self.field_selector.matches(strategies.field_view(info, obj))

    def read_revision(self) -> int:
        """The store revision a list must read at: 0 (newest) unless Exact is asked."""
        if self.resource_version in (None, "0") or self.continue_token:
            return 0
        if self.resource_version_match == "Exact" or (self.resource_version_match is None and self.limit):
            return int(self.resource_version)
        return 0

    def min_revision(self) -> int:
        """For NotOlderThan: the revision the answer must be at least at."""
        if self.resource_version in (None, "0"):
            return 0
        return int(self.resource_version)


def _non_negative(query, name: str, default: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.bad_request(f"{name}: invalid value {raw!r}: must be an integer") from None
    if value < 0:
        raise errors.bad_request(f"{name}: invalid value {value}: must not be negative")
    return value


def _check_versions(rv: Optional[str], match: Optional[str], cont: Optional[str]) -> None:
    if match is not None and match not in RV_MATCHES:
        raise errors.bad_request(f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                                 '"Exact", "NotOlderThan"')
    if match is not None and rv is None:
        raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if cont and rv not in (None, "0"):
        raise errors.bad_request("specifying resource version is not allowed when using continue")
    if cont and match:
        raise errors.bad_request("resourceVersionMatch is forbidden when continue is provided")
    if rv is not None and not rv.isdigit():
        raise errors.bad_request(f'resourceVersion: Invalid value: "{rv}": must be an integer')
    if match == "Exact" and rv == "0":
        raise errors.bad_request('resourceVersionMatch "Exact" is forbidden for resourceVersion "0"')


async def list_objects(storage: Storage, info: ResourceInfo, prefix: str, opts: ListOptions,
                       raw: bool = False) -> ListResult:
    """One page of matching objects; 410 for a compacted revision, 400 for a bad token.

    With ``raw`` the items may be JSON bytes (resourceVersion stamped) instead of
    dicts, when the store can list without decoding and nothing needs to look inside.
    """
    try:
        if opts.selects_all:
            lister = getattr(storage, "list_raw", None) if raw else None
            result = await (lister or storage.list)(prefix, opts.read_revision(), opts.limit,
                                                    opts.continue_token)
        else:
            result = await _filtered(storage, info, prefix, opts)
    except Compacted as exc:
        raise errors.expired(f"too old resource version: {exc.revision} ({exc.compact_revision})") from None
    except BadStorageRequest as exc:
        raise errors.bad_request(str(exc)) from None
    if opts.min_revision() > result.revision:
        raise errors.ApiError(504, "Timeout", f"Too large resource version: {opts.min_revision()}, "
                                              f"current: {result.revision}")
    return result


async def _filtered(storage: Storage, info: ResourceInfo, prefix: str, opts: ListOptions) -> ListResult:
    items: list[dict] = []
    revision, token = opts.read_revision(), opts.continue_token
    while True:
        want = opts.limit - len(items) if opts.limit else 0
        page = await storage.list(prefix, revision, want, token)
        items.extend(obj for obj in page.items if opts.matches(info, obj))
        revision, token = page.revision, page.continue_token
        if token is None or (opts.limit and len(items) >= opts.limit):
            return ListResult(items, page.revision, token, None)
