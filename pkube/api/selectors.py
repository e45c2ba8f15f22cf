"""Label and field selectors: the string syntax of `?labelSelector=` / `?fieldSelector=` and
the structured metav1.LabelSelector of Deployments, ReplicaSets and Services.

Semantics follow `k8s.io/apimachinery/pkg/labels` and `.../fields`:
- an empty label selector ("" or {}) matches everything; `label_selector_from_dict(None)`
  matches nothing (a workload without a selector selects no pod);
- `a!=b` and `a notin (b)` also match objects without the label `a`;
- a field that an object lacks compares as the empty string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pkube.api import names


class SelectorError(ValueError):
    """A selector that cannot be parsed or holds an invalid key or value."""


IN, NOT_IN, EQUALS, NOT_EQUALS = "in", "notin", "=", "!="
EXISTS, DOES_NOT_EXIST, GREATER, LESS = "exists", "!", "gt", "lt"
_SET_OPERATORS = (IN, NOT_IN)
_DICT_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}

# tokens of the label selector string syntax, longest operators first
_TOKEN_RE = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")


@dataclass(frozen=True)
class Requirement:
    """One `key op values` term; `values` is a sorted tuple (empty for exists/!)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        """True when `labels` satisfies this term."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in (IN, EQUALS):
            return present and value in self.values
        if self.operator in (NOT_IN, NOT_EQUALS):
            return not present or value not in self.values
        if self.operator == EXISTS:
            return present
        if self.operator == DOES_NOT_EXIST:
            return not present
        return present and _compare_int(value, self.operator, self.values[0])

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator in _SET_OPERATORS:
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        symbol = {GREATER: ">", LESS: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{self.values[0]}"


def _compare_int(value: str, operator: str, bound: str) -> bool:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return False
    return number > int(bound) if operator == GREATER else number < int(bound)


def make_requirement(key: str, operator: str, values=()) -> Requirement:
    """Build a validated Requirement; raises SelectorError like Kubernetes' NewRequirement."""
    if not isinstance(key, str) or not all(isinstance(v, str) for v in values):
        raise SelectorError(f"label selector keys and values must be strings (key {key!r})")
    problems = names.qualified_name(key)
    if problems:
        raise SelectorError(f'invalid label key "{key}": {"; ".join(problems)}')
    values = tuple(sorted(set(values)))
    if operator in _SET_OPERATORS and not values:
        raise SelectorError(f"for 'in', 'notin' operators, values set can't be empty (key {key!r})")
    if operator in (EQUALS, NOT_EQUALS, GREATER, LESS) and len(values) != 1:
        raise SelectorError(f"exact-match compatibility requires one single value (key {key!r})")
    if operator in (EXISTS, DOES_NOT_EXIST) and values:
        raise SelectorError(f"values set must be empty for exists and does not exist (key {key!r})")
    for value in values:
        _check_value(key, operator, value)
    return Requirement(key, operator, values)


def _check_value(key: str, operator: str, value: str) -> None:
    if operator in (GREATER, LESS):
        if not re.fullmatch(r"-?\d+", value):
            raise SelectorError(f"for 'Gt', 'Lt' operators, the value must be an integer (key {key!r})")
        return
    problems = names.label_value(value)
    if problems:
        raise SelectorError(f'invalid label value: "{value}": at key: "{key}": {"; ".join(problems)}')


class LabelSelector:
    """A conjunction of requirements. `matches_nothing` is the selector of a None dict."""

    def __init__(self, requirements=(), matches_nothing: bool = False):
        self.requirements = tuple(sorted(requirements, key=lambda r: (r.key, r.operator)))
        self.matches_nothing = matches_nothing

    @property
    def empty(self) -> bool:
        """True when the selector matches every object (no requirement at all)."""
        return not self.requirements and not self.matches_nothing

    def matches(self, labels: dict | None) -> bool:
        """True when the labels (None = no labels) satisfy every requirement."""
        if self.matches_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})" if not self.matches_nothing else "LabelSelector(<nothing>)"

    def __eq__(self, other) -> bool:
        return (isinstance(other, LabelSelector) and self.requirements == other.requirements
                and self.matches_nothing == other.matches_nothing)

    def __hash__(self) -> int:
        return hash((self.requirements, self.matches_nothing))


class _Tokens:
    """A cursor over the tokens of a label selector string."""

    def __init__(self, text: str):
        self.items = _tokenize(text)
        self.position = 0

    def peek(self) -> str | None:
        return self.items[self.position] if self.position < len(self.items) else None

    def take(self) -> str | None:
        token = self.peek()
        self.position += 1
        return token

    def expect(self, wanted: str) -> None:
        token = self.take()
        if token != wanted:
            raise SelectorError(f"unable to parse requirement: found {_show(token)}, expected: '{wanted}'")


def _tokenize(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if not match:  # only trailing whitespace is left
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _show(token: str | None) -> str:
    return "end of string" if token is None else f"'{token}'"


_SYMBOLS = {"!=", "==", "=", "!", "(", ")", ",", ">", "<"}


def _identifier(tokens: _Tokens) -> str:
    token = tokens.take()
    if token is None or token in _SYMBOLS:
        raise SelectorError(f"unable to parse requirement: found {_show(token)}, expected: identifier")
    return token


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the Kubernetes label selector syntax; "" selects everything.

    Raises SelectorError with a readable message on bad syntax, keys or values.
    """
    if not isinstance(text, str):
        raise SelectorError(f"label selector must be a string, not {type(text).__name__}")
    tokens = _Tokens(text)
    requirements = []
    while tokens.peek() is not None:
        requirements.append(_parse_requirement(tokens))
        following = tokens.take()
        if following not in (None, ","):
            raise SelectorError(f"found '{following}', expected: ',' or 'end of string'")
        if following == "," and tokens.peek() is None:
            raise SelectorError("found 'end of string', expected: identifier after ','")
    return LabelSelector(requirements)


def _parse_requirement(tokens: _Tokens) -> Requirement:
    if tokens.peek() == "!":
        tokens.take()
        return make_requirement(_identifier(tokens), DOES_NOT_EXIST)
    key = _identifier(tokens)
    operator = tokens.peek()
    if operator in (None, ","):
        return make_requirement(key, EXISTS)
    tokens.take()
    if operator in ("=", "=="):
        return make_requirement(key, EQUALS, [_exact_value(tokens)])
    if operator in ("!=", ">", "<"):
        mapped = {"!=": NOT_EQUALS, ">": GREATER, "<": LESS}[operator]
        return make_requirement(key, mapped, [_exact_value(tokens)])
    if operator in _SET_OPERATORS:
        return make_requirement(key, operator, _value_set(tokens))
    raise SelectorError(
        f"unable to parse requirement: found '{operator}', expected: in, notin, =, ==, !=, gt, lt"
    )


def _exact_value(tokens: _Tokens) -> str:
    token = tokens.peek()
    if token in (None, ","):
        return ""
    return _identifier(tokens)


def _value_set(tokens: _Tokens) -> list[str]:
    tokens.expect("(")
    values = []
    while True:
        token = tokens.peek()
        if token == ")":
            tokens.take()
            return values
        if token == ",":  # an empty value between commas, as in "(a,,b)"
            values.append("")
            tokens.take()
            continue
        values.append(_identifier(tokens))
        if tokens.peek() == ",":
            tokens.take()
            if tokens.peek() == ")":
                values.append("")
        elif tokens.peek() != ")":
            raise SelectorError(f"found {_show(tokens.peek())}, expected: ',' or ')'")


def label_selector_from_dict(selector: dict | None) -> LabelSelector:
    """Convert a metav1.LabelSelector; None matches nothing, {} matches everything.

    Raises SelectorError on an unknown operator or invalid keys/values.
    """
    if selector is None:
        return LabelSelector(matches_nothing=True)
    if not isinstance(selector, dict):
        raise SelectorError("label selector must be an object")
    match_labels = _typed(selector.get("matchLabels"), dict, "matchLabels must be an object")
    expressions = _typed(selector.get("matchExpressions"), list, "matchExpressions must be a list")
    requirements = [
        make_requirement(key, EQUALS, [_string(value, f"matchLabels[{key}]")])
        for key, value in match_labels.items()
    ]
    for expression in expressions:
        requirements.append(_requirement_from_expression(expression))
    return LabelSelector(requirements)


def spec_selector_selects(obj: dict, labels: dict | None) -> bool:
    """Whether the ``spec.selector`` of ``obj`` (a Deployment, ReplicaSet: a metav1.LabelSelector)
    selects ``labels``. An empty, missing or invalid selector selects nothing, as the
    controllers' adoption lookups in Kubernetes skip such objects."""
    try:
        selector = label_selector_from_dict(obj["spec"].get("selector"))
    except SelectorError:
        return False
    return not selector.empty and selector.matches(labels)


def _typed(value, kind: type, message: str):
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise SelectorError(message)
    return value


def _string(value, where: str) -> str:
    if not isinstance(value, str):
        raise SelectorError(f"{where} must be a string")
    return value


def _requirement_from_expression(expression: dict) -> Requirement:
    if not isinstance(expression, dict):
        raise SelectorError("matchExpressions entries must be objects")
    operator = expression.get("operator")
    if not isinstance(operator, str) or operator not in _DICT_OPERATORS:
        raise SelectorError(f'"{operator}" is not a valid label selector operator')
    values = _typed(expression.get("values"), list, "matchExpressions values must be a list")
    return make_requirement(_string(expression.get("key", ""), "matchExpressions key"),
                            _DICT_OPERATORS[operator], [_string(v, "matchExpressions values") for v in values])


def selector_to_dict(selector: LabelSelector) -> dict:
    """The metav1.LabelSelector form of a selector; raises SelectorError for `>`/`<` terms."""
    match_labels, expressions = {}, []
    reverse = {v: k for k, v in _DICT_OPERATORS.items()}
    for r in selector.requirements:
        if r.operator == EQUALS:
            match_labels[r.key] = r.values[0]
        elif r.operator in reverse:
            expression = {"key": r.key, "operator": reverse[r.operator]}
            if r.values:
                expression["values"] = list(r.values)
            expressions.append(expression)
        elif r.operator == NOT_EQUALS:
            expressions.append({"key": r.key, "operator": "NotIn", "values": list(r.values)})
        else:
            raise SelectorError(f"{r} has no metav1.LabelSelector form (no Gt/Lt operators there)")
    result = {}
    if match_labels:
        result["matchLabels"] = match_labels
    if expressions:
        result["matchExpressions"] = expressions
    return result


# ---------------------------------------------------------------------------------------------
# field selectors

@dataclass(frozen=True)
class FieldRequirement:
    """One `field op value` term; op is "=" or "!="."""

    field: str
    operator: str
    value: str

    def matches(self, obj: dict) -> bool:
        """True when the object's field (missing = "") satisfies this term."""
        actual = field_value(obj, self.field)
        return (actual == self.value) == (self.operator == EQUALS)

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{_escape_field_value(self.value)}"


def field_value(obj: dict, path: str) -> str:
    """The string form of a dotted field of `obj` ("" when absent; booleans as true/false)."""
    current = obj
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return ""
        current = current[part]
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return current if isinstance(current, str) else str(current)


class FieldSelector:
    """A conjunction of field requirements; empty matches everything."""

    def __init__(self, requirements=()):
        self.requirements = tuple(requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: dict) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def fields(self) -> set[str]:
        """The field paths this selector uses (to refuse unsupported ones per kind)."""
        return {r.field for r in self.requirements}

    def value_for(self, field: str) -> str | None:
        """The value required by an `=` term on `field`, or None (for index lookups)."""
        for r in self.requirements:
            if r.field == field and r.operator == EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def parse_field_selector(text: str) -> FieldSelector:
    """Parse `f=v`, `f==v`, `f!=v` terms joined by commas ("" selects everything).

    Backslash escapes `\\,` `\\=` `\\\\` in values as Kubernetes does. Raises SelectorError.
    """
    if not isinstance(text, str):
        raise SelectorError(f"field selector must be a string, not {type(text).__name__}")
    requirements = []
    for term in _split_unescaped(text, ","):
        if term.strip():
            requirements.append(_parse_field_term(term))
    return FieldSelector(requirements)


def _parse_field_term(term: str) -> FieldRequirement:
    for symbol, operator in (("!=", NOT_EQUALS), ("==", EQUALS), ("=", EQUALS)):
        index = _find_unescaped(term, symbol)
        if index >= 0:
            field = term[:index].strip()
            if not field:
                raise SelectorError(f"invalid field selector: '{term}': empty field name")
            value = _unescape_field_value(term[index + len(symbol):])
            return FieldRequirement(field, operator, value)
    raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")


def _find_unescaped(text: str, symbol: str) -> int:
    index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text.startswith(symbol, index):
            return index
        index += 1
    return -1


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, start = [], 0
    while True:
        index = _find_unescaped(text[start:], separator)
        if index < 0:
            parts.append(text[start:])
            return parts
        parts.append(text[start:start + index])
        start += index + len(separator)


def _unescape_field_value(value: str) -> str:
    result, index = [], 0
    while index < len(value):
        char = value[index]
        if char == "\\":
            if index + 1 >= len(value) or value[index + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector value {value!r}: bad escape")
            result.append(value[index + 1])
            index += 2
            continue
        if char in ",=":
            raise SelectorError(f"invalid field selector value {value!r}: unescaped '{char}'")
        result.append(char)
        index += 1
    return "".join(result)


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
