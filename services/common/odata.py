"""OData v4 $filter and $orderby as Microsoft Graph accepts them, compiled to PostgreSQL for asyncpg. Pure.

Pipeline: text -> tokens (_tokenize) -> AST (_Parser) -> SQL with $N placeholders (_Compiler).
Literal values only ever reach the SQL as parameters (an enum member that a Field's `equals` turns into SQL is
first checked against the Field's members); column text only ever comes from the Field table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MAX_LENGTH = 4096
MAX_DEPTH = 50
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

FIELD_TYPES = ("string", "enum", "datetime", "date", "int", "bool")
COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
UNSUPPORTED_OPERATORS = ("add", "sub", "mul", "div", "divby", "mod")
KEYWORDS = frozenset(("and", "or", "not", "in", "has", *COMPARISONS, *UNSUPPORTED_OPERATORS))
LITERAL_WORDS = {"true": ("bool", True), "false": ("bool", False), "null": ("null", None)}
LIKE_PATTERNS = {"startswith": "{}%", "endswith": "%{}", "contains": "%{}%"}


class ODataError(ValueError):
    """Invalid query option; str(err) is a message for the API user that names the problem
    (e.g. the offending property, operator, literal or position)."""


@dataclass(frozen=True)
class Field:
    column: str  # SQL column expression, e.g. "event_date_time"
    type: str  # one of FIELD_TYPES
    enum_values: tuple[str, ...] = ()  # for "enum": the Graph member names, which the column stores as text
    casefold: bool = False  # string compared case-insensitively (column and literal lowered)
    empty_is_null: bool = False  # string column stores '' for null (services/common/optional.py)
    # for "enum": member -> the SQL of `property eq member`, when the column is an expression no index serves
    # (e.g. a status derived from a stored one and the time) but an equivalent condition on the stored columns is
    equals: Callable[[str], str] | None = None

    def __post_init__(self):
        if self.type not in FIELD_TYPES:
            raise ValueError(f"Unknown field type {self.type!r}")


@dataclass(frozen=True)
class Function:
    args: tuple[str, ...]  # the argument types ("literal": a string literal)
    result: str  # a FIELD_TYPES type, or "condition"
    sql: str  # template over the arguments' SQL ({0}, {1})


_UTC = "({0} AT TIME ZONE 'UTC')"
FUNCTIONS = {
    **{name: Function(("string", "literal"), "condition", "lower({0}) LIKE lower({1}) ESCAPE '\\'")
       for name in LIKE_PATTERNS},
    "tolower": Function(("string",), "string", "lower({0})"),
    "toupper": Function(("string",), "string", "upper({0})"),
    "length": Function(("string",), "int", "char_length({0})"),
    **{name: Function(("datetime",), "int", f"EXTRACT({name.upper()} FROM {_UTC})::integer")
       for name in ("year", "month", "day", "hour", "minute")},
    "date": Function(("datetime",), "date", f"{_UTC}::date"),
}


# --- AST ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    name: str
    pos: int


@dataclass(frozen=True)
class Literal:
    kind: str  # "string", "guid", "enum", "int", "datetime", "bool" or "null"
    value: object
    text: str  # as written, for messages
    pos: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True)
class In:
    operand: Node
    values: tuple[Literal, ...]
    pos: int


@dataclass(frozen=True)
class Logical:
    op: str  # "and" or "or"
    operands: tuple[Node, ...]  # two or more


@dataclass(frozen=True)
class Not:
    operand: Node
    pos: int


Node = Property | Literal | Call | Compare | In | Logical | Not
VALUES = (Property, Call)  # nodes that read a row: a property, or a function of one


def is_condition(node: Node) -> bool:
    """Boolean by construction: a comparison, and/or/not, or a call of contains() and its kind."""
    if isinstance(node, Call):
        return FUNCTIONS[node.name].result == "condition"
    return isinstance(node, (Compare, In, Logical, Not))


# --- tokens ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "(", ")", ",", "end" or a literal kind
    text: str
    value: object
    pos: int


# names may be qualified (microsoft.graph.x) or a path into a complex property (applicationDetail/fileHash)
_NAME = re.compile(r"[A-Za-z_]\w*(?:[./][A-Za-z_]\w*)*", re.ASCII)
_RUN = re.compile(r"[\w.:+-]+", re.ASCII)  # an unquoted literal extends over these characters
_INT = re.compile(r"-?[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,12}))?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)


def _syntax_error(pos: int, message: str) -> ODataError:
    return ODataError(f"Syntax error at position {pos}: {message}.")


def _tokenize(text: str) -> list[_Token]:
    tokens, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch in "(),":
            token = _Token(ch, ch, None, i)
        elif ch == "'":
            token = _string_token(text, i, "string")
        elif ch in "0123456789-":
            token = _unquoted_literal(text, i)
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            token = _word_token(text, i)
        else:
            raise _syntax_error(i, f"unexpected character {ch!r}")
        tokens.append(token)
        i = token.pos + len(token.text)
    tokens.append(_Token("end", "", None, len(text)))
    return tokens


def _string_token(text: str, start: int, kind: str, quote: int | None = None) -> _Token:
    """A single-quoted string ('' escapes a quote) whose quote is at `quote` (default `start`)."""
    quote = start if quote is None else quote
    parts, i = [], quote + 1
    while True:
        end = text.find("'", i)
        if end < 0:
            raise _syntax_error(quote, "unterminated string literal")
        parts.append(text[i:end])
        if not text.startswith("'", end + 1):
            return _Token(kind, text[start : end + 1], "".join(parts), start)
        parts.append("'")
        i = end + 2


def _unquoted_literal(text: str, start: int) -> _Token:
    run = _RUN.match(text, start).group()
    if _GUID.fullmatch(run):
        return _Token("guid", run, run, start)
    if _INT.fullmatch(run):
        return _Token("int", run, int(run), start)
    if _DATETIME.fullmatch(run):
        value = _parse_datetime(run)
        if value is None:
            raise _syntax_error(start, f"invalid date/time {run!r}")
        return _Token("datetime", run, value, start)
    raise _syntax_error(start, f"invalid literal {run!r}")


def _word_token(text: str, start: int) -> _Token:
    run = _RUN.match(text, start).group()
    if _GUID.fullmatch(run):
        return _Token("guid", run, run, start)
    name = _NAME.match(text, start).group()
    end = start + len(name)
    if "." in name and text.startswith("'", end):  # enum literal: microsoft.graph.someType'member'
        return _string_token(text, start, "enum", quote=end)
    return _Token("name", name, None, start)


def _parse_datetime(text: str) -> datetime | None:
    """ISO-8601 date or date-time as a UTC datetime; no offset means UTC. None when not a valid one."""
    match = _DATETIME.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        value = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                         micros, tzinfo=_timezone(offset))
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _timezone(offset: str | None) -> timezone:
    if offset is None or offset in ("Z", "z"):
        return timezone.utc
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if minutes > 59:
        raise ValueError(offset)
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if offset[0] == "-" else delta)


# --- parser ------------------------------------------------------------------------------------------
#   or         := and ('or' and)*
#   and        := comparison ('and' comparison)*
#   comparison := unary [cmp unary | 'in' '(' literal (',' literal)* ')']
#   unary      := 'not' unary | operand                       (not binds tighter than comparisons, as in OData)
#   operand    := '(' or ')' | function '(' operand (',' operand)* ')' | literal | property


def parse_filter(text: str) -> Node:
    """The AST of a $filter expression; checks syntax only (properties and types are checked when compiling)."""
    _check_length(text, "$filter")
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self._or()
        self._expect("end", "'and', 'or' or end of input")
        return node

    def _or(self) -> Node:
        return self._chain("or", self._and)

    def _and(self) -> Node:
        return self._chain("and", self._comparison)

    def _chain(self, op: str, operand) -> Node:
        operands = [operand()]
        while self._accept_word(op):
            operands.append(operand())
        return operands[0] if len(operands) == 1 else Logical(op, tuple(operands))

    def _comparison(self) -> Node:
        left = self._unary()
        token = self._peek()
        if token.kind != "name":
            return left
        if token.text in COMPARISONS or token.text == "has":
            self._next()
            return Compare(token.text, left, self._unary(), token.pos)
        if token.text == "in":
            self._next()
            return In(left, self._in_list(token), token.pos)
        if token.text in UNSUPPORTED_OPERATORS:
            raise _syntax_error(token.pos, f"the operator '{token.text}' is not supported")
        return left

    def _unary(self) -> Node:
        token = self._peek()
        if not self._accept_word("not"):
            return self._operand()
        self._enter(token)
        operand = self._unary()
        self.depth -= 1
        return Not(operand, token.pos)

    def _operand(self) -> Node:
        token = self._next()
        if token.kind == "(":
            self._enter(token)
            node = self._or()
            self._expect(")", "'and', 'or' or ')'")
            self.depth -= 1
            return node
        if token.kind == "name" and _case_hint(token.text):  # e.g. NOT, AND, TRUE, StartsWith
            raise _syntax_error(token.pos, f"unexpected '{token.text}'{_case_hint(token.text)}")
        if token.kind == "name" and token.text not in KEYWORDS and token.text not in LITERAL_WORDS:
            return self._call(token) if self._peek().kind == "(" else Property(token.text, token.pos)
        if _is_literal(token):
            return _literal(token)
        raise self._unexpected(token, "a property, literal, function or '('")

    def _call(self, name: _Token) -> Call:
        if name.text not in FUNCTIONS:
            raise _syntax_error(name.pos, f"unknown function '{name.text}'")
        self._enter(self._next())
        args = [] if self._peek().kind == ")" else [self._operand()]
        while args and self._accept(","):
            args.append(self._operand())
        self._expect(")", "',' or ')'")
        self.depth -= 1
        arity = len(FUNCTIONS[name.text].args)
        if len(args) != arity:
            raise _syntax_error(name.pos, f"function '{name.text}' takes {arity} argument{'s' * (arity > 1)} "
                                          f"but {len(args)} {'was' if len(args) == 1 else 'were'} given")
        return Call(name.text, tuple(args), name.pos)

    def _in_list(self, in_token: _Token) -> tuple[Literal, ...]:
        self._expect("(", "'(' after 'in'")
        if self._accept(")"):
            raise _syntax_error(in_token.pos, "'in' needs at least one value")
        values = [self._literal()]
        while self._accept(","):
            values.append(self._literal())
        self._expect(")", "',' or ')'")
        return tuple(values)

    def _literal(self) -> Literal:
        token = self._next()
        if not _is_literal(token):
            raise self._unexpected(token, "a literal")
        return _literal(token)

    # token helpers

    def _peek(self) -> _Token:
        return self.tokens[self.index]

    def _next(self) -> _Token:
        token = self.tokens[self.index]
        self.index += token.kind != "end"
        return token

    def _accept(self, kind: str) -> bool:
        if self._peek().kind != kind:
            return False
        self._next()
        return True

    def _accept_word(self, word: str) -> bool:
        token = self._peek()
        if token.kind != "name" or token.text != word:
            return False
        self._next()
        return True

    def _expect(self, kind: str, expected: str) -> _Token:
        token = self._next()
        if token.kind != kind:
            raise self._unexpected(token, expected)
        return token

    def _enter(self, token: _Token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _syntax_error(token.pos, f"the expression is nested more than {MAX_DEPTH} levels deep")

    @staticmethod
    def _unexpected(token: _Token, expected: str) -> ODataError:
        found = "end of input" if token.kind == "end" else f"'{_shorten(token.text)}'"
        return _syntax_error(token.pos, f"expected {expected} but found {found}{_case_hint(token.text)}")


def _is_literal(token: _Token) -> bool:
    return token.kind in ("string", "guid", "enum", "int", "datetime") or (
        token.kind == "name" and token.text in LITERAL_WORDS
    )


def _literal(token: _Token) -> Literal:
    kind, value = LITERAL_WORDS[token.text] if token.kind == "name" else (token.kind, token.value)
    return Literal(kind, value, token.text, token.pos)


def _case_hint(word: str) -> str:
    known = KEYWORDS | LITERAL_WORDS.keys() | FUNCTIONS.keys()
    if word != word.lower() and word.lower() in known:
        return f" ('{word.lower()}' must be written in lowercase)"
    return ""


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_length(text: str, option: str):
    if len(text) > MAX_LENGTH:
        raise ODataError(f"The {option} query option is {len(text)} characters long; the maximum is {MAX_LENGTH}.")


# --- compiler ----------------------------------------------------------------------------------------
# OData comparisons are two-valued (null eq 'x' is false, null ne 'x' is true) where SQL's are three-valued,
# so `ne` compiles to IS DISTINCT FROM and negations to NOT COALESCE(..., FALSE): rows with NULLs are kept.

SQL_OPERATORS = {"eq": "=", "ne": "IS DISTINCT FROM", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def compile_filter(text: str, fields: Mapping[str, Field], params: list) -> str:
    """Returns a SQL boolean expression; appends literal values to `params` and refers to them as $N where
    N = position in params (1-based), so callers can pre-fill params (e.g. params=[tenant_id] already holds $1
    -> the first literal becomes $2). Empty/whitespace text -> returns "TRUE". `params` is untouched on error."""
    if text is None or not text.strip():
        return "TRUE"
    compiler = _Compiler(fields, len(params))
    sql = compiler.nested(parse_filter(text))
    params.extend(compiler.params)  # only once everything compiled
    return sql


class _Compiler:
    def __init__(self, fields: Mapping[str, Field], offset: int):
        self.fields = fields
        self.offset = offset
        self.params: list = []

    def nested(self, node: Node) -> str:
        """SQL for a condition, parenthesised when it is an and/or so it can sit next to other SQL."""
        sql = self.condition(node)
        return f"({sql})" if isinstance(node, Logical) else sql

    def condition(self, node: Node) -> str:
        if isinstance(node, Logical):
            return f" {node.op.upper()} ".join(self.nested(operand) for operand in node.operands)
        if isinstance(node, Not):
            return self.negation(node)
        if isinstance(node, Compare):
            return self.comparison(node)
        if isinstance(node, In):
            return self.membership(node)
        if isinstance(node, Call) and is_condition(node):
            return self.call(node)
        if isinstance(node, Call):
            raise ODataError(f"{node.name}() at position {node.pos} is a value, not a condition: compare it.")
        if isinstance(node, Property):
            return self.boolean_property(node)
        if node.kind == "bool":
            return "TRUE" if node.value else "FALSE"
        raise ODataError(f"The literal {_shorten(node.text)} at position {node.pos} is not a condition.")

    def boolean_property(self, prop: Property) -> str:
        field = self.field(prop)
        if field.type != "bool":
            raise ODataError(f"The property '{prop.name}' is not a boolean and cannot be used as a condition.")
        return field.column

    def negation(self, node: Not) -> str:
        operand = node.operand
        if isinstance(operand, Property) and self.field(operand).type != "bool":
            raise ODataError(f"'not' cannot be applied to the property '{operand.name}', which is not a boolean "
                             f"('not' binds tighter than comparisons: write not({operand.name} eq ...)).")
        return f"NOT COALESCE({self.condition(operand)}, FALSE)"

    def comparison(self, node: Compare) -> str:
        op, left, right = node.op, node.left, node.right
        if op == "has":
            return self.has(node)
        if is_condition(left) or is_condition(right):
            return self.condition_comparison(node)
        if isinstance(left, Literal) and isinstance(right, VALUES):
            op, left, right = FLIPPED[op], right, left
        if isinstance(left, VALUES) and isinstance(right, Literal):
            return self.field_comparison(left, op, right)
        if isinstance(left, VALUES) and isinstance(right, VALUES):
            (_, left_name), (_, right_name) = self.operand(left), self.operand(right)  # unknown ones first
            raise ODataError(f"Comparing two properties ('{left_name}' {op} '{right_name}') is not supported.")
        raise ODataError(f"The '{op}' at position {node.pos} must compare a property with a literal.")

    def has(self, node: Compare) -> str:
        """`flags has member`: no enum of these resources is a flags enum in Graph's metadata, so always a 400."""
        if not isinstance(node.left, VALUES):
            raise ODataError(f"The left side of 'has' at position {node.pos} must be a property.")
        field, name = self.operand(node.left)
        if field.type == "enum":
            raise ODataError(f"The property '{name}' is not a flags enum, so 'has' cannot be used with it; "
                             "use 'eq' or 'in'.")
        raise ODataError(f"'has' needs a flags enum property but '{name}' is of type {field.type}.")

    def condition_comparison(self, node: Compare) -> str:
        """`condition eq true`, `startswith(...) eq false` and the like."""
        cond, other = (node.left, node.right) if is_condition(node.left) else (node.right, node.left)
        sql = self.nested(cond)
        if not (isinstance(other, Literal) and other.kind == "bool" and node.op in ("eq", "ne")):
            raise ODataError(f"The condition compared by '{node.op}' at position {node.pos} "
                             "can only be compared with true or false using 'eq' or 'ne'.")
        return sql if other.value == (node.op == "eq") else f"NOT COALESCE({sql}, FALSE)"

    def field_comparison(self, value_node: Node, op: str, literal: Literal) -> str:
        field, name = self.operand(value_node)
        if literal.kind == "null":
            return self.null_comparison(name, field, op)
        if op not in ("eq", "ne") and field.type in ("bool", "enum"):
            raise ODataError(f"The operator '{op}' cannot be used with the {field.type} property '{name}'.")
        column, (value,) = _folded(field, [_value(name, field, literal)])
        if op not in ("eq", "ne") or value == "":
            column = _nulled(field, column)
        if field.equals and op in ("eq", "ne"):  # an allowlisted member: its SQL is constant
            return field.equals(value) if op == "eq" else f"NOT ({field.equals(value)})"
        return f"{column} {SQL_OPERATORS[op]} {self.bind(value)}"

    def null_comparison(self, name: str, field: Field, op: str) -> str:
        if op not in ("eq", "ne"):
            raise ODataError(f"null can only be compared with 'eq' or 'ne', not '{op}' (property '{name}').")
        if field.empty_is_null:
            return f"{field.column} {'=' if op == 'eq' else '<>'} ''"
        return f"{field.column} {'IS NULL' if op == 'eq' else 'IS NOT NULL'}"

    def membership(self, node: In) -> str:
        if not isinstance(node.operand, VALUES):
            raise ODataError(f"The left side of 'in' at position {node.pos} must be a property.")
        field, name = self.operand(node.operand)
        literals = [value for value in node.values if value.kind != "null"]
        matches = [self.null_comparison(name, field, "eq")] if len(literals) < len(node.values) else []
        if literals:
            column, values = _folded(field, [_value(name, field, value) for value in literals])
            column = _nulled(field, column) if "" in values else column
            matches.append("(" + " OR ".join(field.equals(value) for value in values) + ")" if field.equals
                           else f"{column} IN ({', '.join(self.bind(value) for value in values)})")
        return matches[0] if len(matches) == 1 else "(" + " OR ".join(matches) + ")"

    def call(self, node: Call) -> str:
        """contains(), startswith(), endswith(): a string value LIKE a pattern from a literal."""
        arg = self.argument(node, node.args[0], "string")
        column, literal = _nulled(arg, arg.column), node.args[1]
        if not (isinstance(literal, Literal) and literal.kind in ("string", "guid")):
            raise ODataError(f"The second argument of {node.name}() at position {node.pos} must be a string literal.")
        pattern = LIKE_PATTERNS[node.name].format(_escape_like(literal.value))
        return FUNCTIONS[node.name].sql.format(column, self.bind(pattern))

    def operand(self, node: Node) -> tuple[Field, str]:
        """The Field a value reads and its name for messages: a property's own, or for a function of one
        (tolower(deviceName)) a Field of the function's SQL and result type."""
        if isinstance(node, Property):
            return self.field(node), node.name
        if is_condition(node):
            raise ODataError(f"{node.name}() at position {node.pos} is a condition, not a value.")
        function = FUNCTIONS[node.name]
        arg = self.argument(node, node.args[0], function.args[0])
        return Field(function.sql.format(_nulled(arg, arg.column)), function.result), _name(node)  # f(null) is null

    def argument(self, call: Call, arg: Node, wanted: str) -> Field:
        """The Field of a function's value argument, checked to be of the `wanted` type."""
        if not isinstance(arg, VALUES) or is_condition(arg):
            raise ODataError(f"The first argument of {call.name}() at position {call.pos} must be a property.")
        field, name = self.operand(arg)
        if field.type != wanted:
            raise ODataError(f"{call.name}() needs a {wanted} property but '{name}' is of type {field.type}.")
        return field

    def field(self, prop: Property) -> Field:
        field = self.fields.get(prop.name)
        if field is None:
            raise ODataError(f"Could not find a property named '{prop.name}'.")
        return field

    def bind(self, value) -> str:
        self.params.append(value)
        return f"${self.offset + len(self.params)}"


def _name(node: Node) -> str:
    return node.name if isinstance(node, Property) else f"{node.name}({_name(node.args[0])})"


def _value(name: str, field: Field, literal: Literal):
    """The Python value of `literal` for `field`, or ODataError when it does not fit the field's type."""
    kind, value = literal.kind, literal.value
    if field.type == "string" and kind in ("string", "guid"):
        return value
    if field.type == "enum" and kind in ("string", "enum"):
        if value in field.enum_values:
            return value
        raise ODataError(f"{_shorten(literal.text)} is not a valid value for the property '{name}'.")
    if field.type == "int" and kind == "int":
        if INT32_MIN <= value <= INT32_MAX:
            return value
        raise ODataError(f"The value {_shorten(literal.text)} is out of range for the Int32 property '{name}'.")
    if field.type == "bool" and kind == "bool":
        return value
    if field.type == "datetime" and kind in ("datetime", "string"):
        value = value if kind == "datetime" else _parse_datetime(value)
        if value is not None:
            return value
        raise ODataError(f"{_shorten(literal.text)} is not a valid date/time for the property '{name}'.")
    if field.type == "date" and kind in ("datetime", "string"):
        text = literal.text if kind == "datetime" else value
        if _DATE.fullmatch(text) and (value := _parse_datetime(text)) is not None:
            return value.date()
        raise ODataError(f"{_shorten(literal.text)} is not a valid date (YYYY-MM-DD) for '{name}'.")
    raise ODataError(f"The literal {_shorten(literal.text)} does not fit the {field.type} property '{name}'.")


def _nulled(field: Field, column: str) -> str:
    """`column` where '' stands for null (an empty_is_null Field) made null, for the comparisons a stored '' must
    not pass as a value: `eq ''` (no value is '': it is null), gt/ge/lt/le (null is not less than 'b')."""
    return f"NULLIF({column}, '')" if field.empty_is_null else column


def _folded(field: Field, values: list) -> tuple[str, list]:
    """Column and values as compared: both lowered for casefold string fields."""
    if field.casefold and field.type == "string":
        return f"lower({field.column})", [value.lower() for value in values]
    return field.column, values


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- $orderby ----------------------------------------------------------------------------------------


def parse_orderby(text: str, fields: Mapping[str, Field]) -> list[tuple[str, bool]]:
    """'eventDateTime desc, hash' -> [("eventDateTime", True), ("hash", False)]  (property name, descending).
    Unknown property, duplicate property, bad direction -> ODataError. Empty text -> []."""
    if text is None or not text.strip():
        return []
    _check_length(text, "$orderby")
    order: list[tuple[str, bool]] = []
    for item in text.split(","):
        name, descending = _orderby_item(item, fields)
        if any(name == seen for seen, _ in order):
            raise ODataError(f"The property '{name}' appears more than once in $orderby.")
        order.append((name, descending))
    return order


def _orderby_item(item: str, fields: Mapping[str, Field]) -> tuple[str, bool]:
    words = item.split()
    if not words or len(words) > 2:
        raise ODataError(f"Invalid $orderby item '{_shorten(item.strip())}': expected 'property [asc|desc]'.")
    name, direction = words[0], words[1] if len(words) == 2 else "asc"
    if name not in fields:
        raise ODataError(f"Could not find a property named '{name}'.")
    if direction not in ("asc", "desc"):
        raise ODataError(f"Invalid sort direction '{direction}' for '{name}'; use 'asc' or 'desc'.")
    return name, direction == "desc"
