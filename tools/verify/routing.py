"""The route tree, walked the way Alertmanager's dispatcher walks it.

For where amtool is absent: the labels a test alert needs to reach a receiver, and the receivers
and aggregation groups an alert ends in (tests/test_verify.py checks it against amtool).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

ROUTE_DEFAULTS = {"group_wait": 30.0, "group_interval": 300.0}  # Alertmanager's route defaults

_NAME = r'[a-zA-Z_:][a-zA-Z0-9_:.]*|"(?:[^"\\]|\\.)*"'
_VALUE = r'"(?:[^"\\]|\\.)*"|[^,}"]*'
_MATCHER_RE = re.compile(rf'\s*({_NAME})\s*(=~|!~|!=|=)\s*({_VALUE})\s*(?:,|$)')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        try:
            hit = re.fullmatch(f"(?:{self.value})", value, re.DOTALL) is not None
        except re.error:
            hit = False
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def _unquote(text: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)  # Alertmanager's escapes (\" \\ \n) are JSON's
    return text


def parse_matchers(text: str) -> list[Matcher]:
    """One entry of a route's ``matchers`` list: ``a="b"``, ``a=~"x|y"``, or ``{a="b", c!="d"}``."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers, position = [], 0
    while position < len(body) and body[position:].strip():
        found = _MATCHER_RE.match(body, position)
        if not found or found.end() == position:
            raise ValueError(f"cannot parse matcher {text!r}")
        name, op, value = found.groups()
        matchers.append(Matcher(_unquote(name), op, _unquote(value)))
        position = found.end()
    return matchers


def parse_duration(text: Any, default: float) -> float:
    """A Prometheus duration (``30s``, ``1h30m``) in seconds."""
    if text in (None, ""):
        return default
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return default
    return float(sum(int(n) * units[u] for n, u in parts))


@dataclass
class Route:
    id: str  # position in the tree ("root", "root.1.0")
    receiver: str
    matchers: list[Matcher]
    continue_: bool
    group_by: list[str]
    group_wait: float
    group_interval: float
    routes: list["Route"]
    parent: Optional["Route"] = None

    def path(self) -> list["Route"]:
        node, nodes = self, []
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def walk(self) -> Iterable["Route"]:
        yield self
        for child in self.routes:
            yield from child.walk()


def build_route(doc: dict, parent: Optional[Route] = None, id: str = "root") -> Route:
    """A route with what it inherits from its parent (receiver, group_by, timings) made explicit."""
    matchers: list[Matcher] = []
    for text in doc.get("matchers") or []:
        matchers += parse_matchers(text)
    matchers += [Matcher(k, "=", str(v)) for k, v in (doc.get("match") or {}).items()]
    matchers += [Matcher(k, "=~", str(v)) for k, v in (doc.get("match_re") or {}).items()]
    inherited = parent or Route("", "", [], False, [], ROUTE_DEFAULTS["group_wait"],
                                ROUTE_DEFAULTS["group_interval"], [])
    route = Route(
        id=id,
        receiver=doc.get("receiver") or inherited.receiver,
        matchers=matchers,
        continue_=bool(doc.get("continue")),
        group_by=list(doc["group_by"]) if doc.get("group_by") is not None else list(inherited.group_by),
        group_wait=parse_duration(doc.get("group_wait"), inherited.group_wait),
        group_interval=parse_duration(doc.get("group_interval"), inherited.group_interval),
        routes=[],
        parent=parent,
    )
    route.routes = [build_route(child, route, f"{id}.{i}") for i, child in enumerate(doc.get("routes") or [])]
    return route


def match_routes(route: Route, labels: dict[str, str]) -> list[Route]:
    """The routes an alert ends in (dispatch.Route.Match): depth first, ``continue`` goes on to siblings."""
    if not all(m.matches(labels) for m in route.matchers):
        return []
    matched: list[Route] = []
    for child in route.routes:
        found = match_routes(child, labels)
        matched += found
        if found and not child.continue_:
            break
    return matched or [route]


def group_key(route: Route, labels: dict[str, str]) -> tuple:
    if "..." in route.group_by:
        return (route.id, tuple(sorted(labels.items())))
    return (route.id, tuple(labels.get(name, "") for name in route.group_by))


def _regex_examples(pattern: str) -> Iterable[str]:
    body = pattern.strip()
    body = body[1:] if body.startswith("^") else body
    body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
    for opener in ("(?:", "("):
        if body.startswith(opener) and body.endswith(")"):
            body = body[len(opener):-1]
            break
    depth, alternative, alternatives = 0, "", []
    for char in body:  # split on top-level |
        depth += char in "([" and 1 or (char in ")]" and -1 or 0)
        if char == "|" and depth == 0:
            alternatives.append(alternative)
            alternative = ""
        else:
            alternative += char
    alternatives.append(alternative)
    for alternative in alternatives:
        yield re.sub(r"\\(.)", r"\1", alternative)
    yield "verify"
    yield re.sub(r"\\(.)", r"\1", pattern)


def labels_for_receiver(root: Route, receiver: str, base: dict[str, str],
                        finish: Callable[[dict[str, str], set[str]], None] = lambda labels, fixed: None,
                        ) -> Optional[tuple[dict[str, str], list[str]]]:
    """Labels that the route tree sends to ``receiver``, and every receiver they reach.

    For each route using the receiver, the matchers on its path are satisfied one by one (``=`` sets
    the value, ``=~`` picks a value matching the regex, ``!=``/``!~`` drop or change the label);
    the candidate is then routed through the whole tree, which also accounts for earlier siblings
    and ``continue``. Of the candidates that reach the receiver, the one reaching the fewest other
    receivers wins (a test of a team receiver should not page more people than it must).
    """
    candidates = []
    for node in root.walk():
        if node.receiver != receiver:
            continue
        labels, fixed, ok = dict(base), set(), True
        for matcher in (m for step in node.path() for m in step.matchers):
            ok = ok and _satisfy(labels, fixed, matcher)
        if not ok:
            continue
        finish(labels, fixed)
        reached = [r.receiver for r in match_routes(root, labels)]
        if receiver in reached:
            candidates.append((len(set(reached)), len(node.path()), labels, list(dict.fromkeys(reached))))
    if not candidates:
        return None
    best = min(candidates, key=lambda c: (c[0], c[1]))
    return best[2], best[3]


def _satisfy(labels: dict[str, str], fixed: set[str], matcher: Matcher) -> bool:
    name = matcher.name
    if matcher.matches(labels):
        if matcher.op in ("=", "=~"):
            fixed.add(name)
        return True
    if name in fixed:
        return False  # an earlier matcher on the path wants another value
    if matcher.op == "=":
        labels[name] = matcher.value
    elif matcher.op == "=~":
        for example in _regex_examples(matcher.value):
            if Matcher(name, "=~", matcher.value).matches({name: example}):
                labels[name] = example
                break
        else:
            return False
    else:  # != or !~: try without the label, then with a neutral value
        labels.pop(name, None)
        if not matcher.matches(labels):
            labels[name] = "verify"
    fixed.add(name)
    return matcher.matches(labels)
