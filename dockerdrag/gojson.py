"""Go ``encoding/json`` emulation of Docker's V1 image record (format section 3).

Docker (<= 24, built with Go < 1.22) decodes an image config into its ``image.Image``
struct and re-encodes the embedded ``V1Image`` for every layer of ``docker save``.
The per-layer ``json`` files and the legacy v1 layer IDs depend on the exact bytes
Go produces, so this module reproduces Go's decoder and encoder for those structs:

* decoding: invalid UTF-8 and lone surrogate escapes become U+FFFD, keys match fields
  exactly or case-insensitively (with Go's Kelvin sign / long s folding), repeated keys
  are applied again in document order (merging objects and maps, re-filling slices in
  place), ``null`` follows Go's per-kind rules, and any type mismatch is an error;
* encoding: struct field order, ``omitempty``, HTML-safe string escaping, sorted map
  keys and ``time.Time`` in RFC 3339 with nanoseconds.

The JSON text is parsed by a small iterative parser of our own that keeps duplicate
keys, document order and raw number and string literals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Final

from .digest import Digest
from .errors import InvalidManifestError

__all__ = [
    "ZERO_TIME",
    "DecodedConfig",
    "GoSlice",
    "GoTime",
    "JsonArray",
    "JsonBool",
    "JsonNull",
    "JsonNumber",
    "JsonObject",
    "JsonString",
    "JsonValue",
    "V1Record",
    "decode_image_config",
    "encode_string",
    "encode_v1_json",
    "encode_value",
    "fold_key",
    "go_map_order",
    "parse_json",
    "strings",
    "v1_id_input",
]

_MAX_NESTING_DEPTH: Final = 10000  # Go's scanner limit
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


# ---------------------------------------------------------------------------
# JSON syntax tree and parser
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class JsonString:
    """A JSON string: its decoded value and its raw source text (quotes included)."""

    value: str
    raw: str


@dataclass(slots=True)
class JsonNumber:
    """A JSON number, kept as its literal text."""

    literal: str


@dataclass(slots=True)
class JsonBool:
    """``true`` or ``false``."""

    value: bool


@dataclass(slots=True)
class JsonNull:
    """``null``."""


@dataclass(slots=True)
class JsonObject:
    """A JSON object: members in document order, duplicate keys kept."""

    members: list[tuple[str, JsonValue]] = field(default_factory=list)


@dataclass(slots=True)
class JsonArray:
    """A JSON array."""

    items: list[JsonValue] = field(default_factory=list)


JsonValue = JsonString | JsonNumber | JsonBool | JsonNull | JsonObject | JsonArray

_WHITESPACE_RE: Final = re.compile(r"[ \t\n\r]*")
_NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING_CHUNK_RE: Final = re.compile(r'[^"\\\x00-\x1f]*')
_HEX4_RE: Final = re.compile(r"[0-9a-fA-F]{4}")
_SIMPLE_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_LITERALS: Final[tuple[tuple[str, JsonValue], ...]] = (
    ("true", JsonBool(True)),
    ("false", JsonBool(False)),
    ("null", JsonNull()),
)


def _syntax_error(text: str, pos: int, what: str) -> InvalidManifestError:
    return InvalidManifestError(f"invalid JSON in image config at offset {pos}: {what}")


_ESCAPED_BYTE_RE: Final = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a bad byte


def decode_utf8_like_go(data: bytes) -> str:
    """Decode bytes as Go does: each byte of an invalid UTF-8 sequence becomes U+FFFD."""
    text = data.decode("utf-8", errors="surrogateescape")
    if not _ESCAPED_BYTE_RE.search(text):
        return text
    return _ESCAPED_BYTE_RE.sub("\ufffd", text)


def _read_hex4(text: str, pos: int) -> int:
    """The code unit of a ``\\uXXXX`` escape starting at ``pos``, or -1."""
    if text.startswith("\\u", pos) and _HEX4_RE.match(text, pos + 2):
        return int(text[pos + 2 : pos + 6], 16)
    return -1


def _scan_unicode_escape(text: str, pos: int) -> tuple[str, int]:
    """Decode ``\\uXXXX`` at ``pos`` the way Go's ``unquote`` does."""
    unit = _read_hex4(text, pos)
    if unit < 0:
        raise _syntax_error(text, pos, "invalid \\u escape")
    pos += 6
    if not 0xD800 <= unit < 0xE000:
        return chr(unit), pos
    low = _read_hex4(text, pos)
    if unit < 0xDC00 and 0xDC00 <= low < 0xE000:
        return chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)), pos + 6
    return "\ufffd", pos


def _scan_string(text: str, pos: int) -> tuple[JsonString, int]:
    """Scan the string literal whose opening quote is at ``pos``."""
    start = pos
    pos += 1
    parts: list[str] = []
    while True:
        match = _STRING_CHUNK_RE.match(text, pos)
        assert match is not None  # the pattern accepts the empty string
        parts.append(match.group())
        pos = match.end()
        if pos >= len(text):
            raise _syntax_error(text, pos, "unterminated string")
        char = text[pos]
        if char == '"':
            pos += 1
            return JsonString("".join(parts), text[start:pos]), pos
        if char != "\\":
            raise _syntax_error(text, pos, "control character in string")
        escape = text[pos + 1 : pos + 2]
        if escape == "u":
            decoded, pos = _scan_unicode_escape(text, pos)
            parts.append(decoded)
        elif escape in _SIMPLE_ESCAPES:
            parts.append(_SIMPLE_ESCAPES[escape])
            pos += 2
        else:
            raise _syntax_error(text, pos, "invalid escape")


def _skip_ws(text: str, pos: int) -> int:
    match = _WHITESPACE_RE.match(text, pos)
    assert match is not None
    return match.end()


def _scan_scalar(text: str, pos: int) -> tuple[JsonValue, int]:
    """Scan a string, number, true, false or null at ``pos``."""
    char = text[pos : pos + 1]
    if char == '"':
        return _scan_string(text, pos)
    if char == "-" or char.isdigit():
        match = _NUMBER_RE.match(text, pos)
        if match is None:
            raise _syntax_error(text, pos, "invalid number")
        return JsonNumber(match.group()), match.end()
    for word, value in _LITERALS:
        if text.startswith(word, pos):
            return value, pos + len(word)
    raise _syntax_error(text, pos, "unexpected character" if char else "unexpected end")


def _scan_key(text: str, pos: int) -> tuple[str, int]:
    """Scan ``"key" :`` and return the key and the position after the colon."""
    if text[pos : pos + 1] != '"':
        raise _syntax_error(text, pos, "expected object key")
    key, pos = _scan_string(text, pos)
    pos = _skip_ws(text, pos)
    if text[pos : pos + 1] != ":":
        raise _syntax_error(text, pos, "expected ':'")
    return key.value, _skip_ws(text, pos + 1)


def parse_json(text: str) -> JsonValue:
    """Parse a complete JSON document iteratively (nesting up to Go's limit of 10000)."""
    stack: list[JsonObject | JsonArray] = []
    keys: list[str] = []
    pos = _skip_ws(text, 0)
    while True:
        # Parse one value at pos; containers are pushed and filled later.
        value: JsonValue
        char = text[pos : pos + 1]
        if char in ("{", "["):
            container: JsonObject | JsonArray = JsonObject() if char == "{" else JsonArray()
            if len(stack) >= _MAX_NESTING_DEPTH:
                raise _syntax_error(text, pos, "exceeded max nesting depth")
            pos = _skip_ws(text, pos + 1)
            closer = "}" if char == "{" else "]"
            if text[pos : pos + 1] != closer:
                stack.append(container)
                if isinstance(container, JsonObject):
                    key, pos = _scan_key(text, pos)
                    keys.append(key)
                continue
            pos += 1
            value = container
        else:
            value, pos = _scan_scalar(text, pos)
        # Attach the finished value; close containers as far as possible.
        while True:
            pos = _skip_ws(text, pos)
            if not stack:
                if pos != len(text):
                    raise _syntax_error(text, pos, "data after the top-level value")
                return value
            top = stack[-1]
            if isinstance(top, JsonObject):
                top.members.append((keys.pop(), value))
            else:
                top.items.append(value)
            char = text[pos : pos + 1]
            if char == ",":
                pos = _skip_ws(text, pos + 1)
                if isinstance(top, JsonObject):
                    key, pos = _scan_key(text, pos)
                    keys.append(key)
                break
            if char == ("}" if isinstance(top, JsonObject) else "]"):
                pos += 1
                value = stack.pop()
                continue
            raise _syntax_error(text, pos, "expected ',' or closing bracket")


# ---------------------------------------------------------------------------
# time.Time
# ---------------------------------------------------------------------------


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(month: int, year: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (any year)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _go_int_div(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b > 0) else -quotient


def _pad(number: int, width: int) -> str:
    """Go's ``appendInt(b, x, width)``: zero-padded, never truncated."""
    sign = "-" if number < 0 else ""
    return sign + str(abs(number)).zfill(width)


class _TimeParseError(Exception):
    pass


class _GoTimeParser:
    """Go 1.19 ``time.Parse`` with the layout ``"2006-01-02T15:04:05Z07:00"`` (quotes included)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def literal(self, text: str) -> None:
        if not self.value.startswith(text):
            raise _TimeParseError
        self.value = self.value[len(text) :]

    def _is_digit(self, index: int) -> bool:
        return len(self.value) > index and "0" <= self.value[index] <= "9"

    def number(self, fixed: bool) -> int:
        """Go's ``getnum``: one or (if ``fixed``, exactly) two digits."""
        if not self._is_digit(0):
            raise _TimeParseError
        if not self._is_digit(1):
            if fixed:
                raise _TimeParseError
            result = int(self.value[0])
            self.value = self.value[1:]
            return result
        result = int(self.value[:2])
        self.value = self.value[2:]
        return result

    def year(self) -> int:
        digits = self.value[:4]
        if len(digits) < 4 or not all("0" <= c <= "9" for c in digits):
            raise _TimeParseError
        self.value = self.value[4:]
        return int(digits)

    def fraction(self) -> int:
        value = self.value
        if len(value) < 2 or value[0] not in ".," or not self._is_digit(1):
            return 0
        end = 2
        while self._is_digit(end):
            end += 1
        self.value = value[end:]
        digits = value[1 : min(end, 10)]
        return int(digits.ljust(9, "0"))

    def zone_offset(self) -> int:
        value = self.value
        if value.startswith("Z"):
            self.value = value[1:]
            return 0
        if len(value) < 6 or value[3] != ":" or value[0] not in "+-":
            raise _TimeParseError
        hours, minutes = _GoTimeParser(value[1:3]), _GoTimeParser(value[4:6])
        offset = (hours.number(True) * 60 + minutes.number(True)) * 60
        self.value = value[6:]
        return -offset if value[0] == "-" else offset


@dataclass(frozen=True)
class GoTime:
    """A Go ``time.Time`` as Docker keeps it: wall clock fields plus the zone offset."""

    year: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0
    nanosecond: int = 0
    offset_seconds: int = 0

    @classmethod
    def parse_json(cls, raw: str) -> GoTime:
        """Parse a raw JSON literal as Go 1.19's ``Time.UnmarshalJSON`` (never ``null``)."""
        parser = _GoTimeParser(raw)
        try:
            parser.literal('"')
            year = parser.year()
            parser.literal("-")
            month = parser.number(True)
            parser.literal("-")
            day = parser.number(True)
            parser.literal("T")
            hour = parser.number(False)
            parser.literal(":")
            minute = parser.number(True)
            parser.literal(":")
            second = parser.number(True)
            nanosecond = parser.fraction()
            offset = parser.zone_offset()
            parser.literal('"')
        except _TimeParseError:
            raise InvalidManifestError(f"image config: cannot parse time {raw}") from None
        in_range = (
            not parser.value
            and 1 <= month <= 12
            and hour < 24
            and minute < 60
            and second < 60
            and 1 <= day <= _days_in_month(month, year)
        )
        if not in_range:
            raise InvalidManifestError(f"image config: cannot parse time {raw}")
        return cls(year, month, day, hour, minute, second, nanosecond, offset)

    @classmethod
    def epoch(cls, offset_seconds: int = 0) -> GoTime:
        """``time.Unix(0, 0)`` in a zone whose UTC offset at the epoch is ``offset_seconds``."""
        wall = datetime(1970, 1, 1) + timedelta(seconds=offset_seconds)
        return cls(
            wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second, 0, offset_seconds
        )

    def unix_seconds(self) -> int:
        """Whole seconds since the Unix epoch (floor), honouring the offset."""
        days = _days_from_civil(self.year, self.month, self.day)
        clock = self.hour * 3600 + self.minute * 60 + self.second
        return days * 86400 + clock - self.offset_seconds

    def format_rfc3339nano(self) -> str:
        """Go's ``Format(time.RFC3339Nano)``."""
        text = (
            f"{_pad(self.year, 4)}-{_pad(self.month, 2)}-{_pad(self.day, 2)}"
            f"T{_pad(self.hour, 2)}:{_pad(self.minute, 2)}:{_pad(self.second, 2)}"
        )
        if self.nanosecond:
            text += "." + f"{self.nanosecond:09d}".rstrip("0")
        if self.offset_seconds == 0:
            return text + "Z"
        zone_minutes = _go_int_div(self.offset_seconds, 60)
        sign = "-" if zone_minutes < 0 else "+"
        zone_minutes = abs(zone_minutes)
        return f"{text}{sign}{_pad(zone_minutes // 60, 2)}:{_pad(zone_minutes % 60, 2)}"


ZERO_TIME: Final = GoTime(1, 1, 1)
"""Go's zero ``time.Time`` (``0001-01-01T00:00:00Z``)."""


# ---------------------------------------------------------------------------
# Go types of Docker's image structs
# ---------------------------------------------------------------------------


class _Scalar(Enum):
    STRING = "string"
    BOOL = "bool"
    INT = "int64"
    TIME = "time.Time"
    STRSLICE = "strslice.StrSlice"


# The Go type descriptors below are built once, at import, and only ever read, by
# attribute and isinstance(): plain slotted classes, since making a dataclass costs
# start-up time (benchmarks/README.md says how much).


class _Field:
    """A field of a Go struct: its Go name (the JSON name), type and ``omitempty``."""

    __slots__ = ("name", "omitempty", "type")

    def __init__(self, name: str, type: _GoType, omitempty: bool = False) -> None:
        self.name = name
        self.type = type
        self.omitempty = omitempty


class _Struct:
    """A Go struct type: its name (for messages) and fields in declaration order."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: tuple[_Field, ...]) -> None:
        self.name = name
        self.fields = fields


class _Pointer:
    """A Go pointer type ``*elem``."""

    __slots__ = ("elem",)

    def __init__(self, elem: _GoType) -> None:
        self.elem = elem


class _Slice:
    """A Go slice type ``[]elem``."""

    __slots__ = ("elem",)

    def __init__(self, elem: _GoType) -> None:
        self.elem = elem


class _Map:
    """A Go map type ``map[string]elem``."""

    __slots__ = ("elem",)

    def __init__(self, elem: _GoType) -> None:
        self.elem = elem


_GoType = _Scalar | _Struct | _Pointer | _Slice | _Map

_S, _B, _I, _T, _SS = (
    _Scalar.STRING,
    _Scalar.BOOL,
    _Scalar.INT,
    _Scalar.TIME,
    _Scalar.STRSLICE,
)
_EMPTY_STRUCT: Final = _Struct("struct {}", ())

_HEALTH_CONFIG: Final = _Struct(
    "container.HealthConfig",
    (
        _Field("Test", _Slice(_S), omitempty=True),
        _Field("Interval", _I, omitempty=True),
        _Field("Timeout", _I, omitempty=True),
        _Field("StartPeriod", _I, omitempty=True),
        _Field("Retries", _I, omitempty=True),
    ),
)

_CONTAINER_CONFIG: Final = _Struct(
    "container.Config",
    (
        _Field("Hostname", _S),
        _Field("Domainname", _S),
        _Field("User", _S),
        _Field("AttachStdin", _B),
        _Field("AttachStdout", _B),
        _Field("AttachStderr", _B),
        _Field("ExposedPorts", _Map(_EMPTY_STRUCT), omitempty=True),
        _Field("Tty", _B),
        _Field("OpenStdin", _B),
        _Field("StdinOnce", _B),
        _Field("Env", _Slice(_S)),
        _Field("Cmd", _SS),
        _Field("Healthcheck", _Pointer(_HEALTH_CONFIG), omitempty=True),
        _Field("ArgsEscaped", _B, omitempty=True),
        _Field("Image", _S),
        _Field("Volumes", _Map(_EMPTY_STRUCT)),
        _Field("WorkingDir", _S),
        _Field("Entrypoint", _SS),
        _Field("NetworkDisabled", _B, omitempty=True),
        _Field("MacAddress", _S, omitempty=True),
        _Field("OnBuild", _Slice(_S)),
        _Field("Labels", _Map(_S)),
        _Field("StopSignal", _S, omitempty=True),
        _Field("StopTimeout", _Pointer(_I), omitempty=True),
        _Field("Shell", _SS, omitempty=True),
    ),
)

_V1_FIELDS: Final = (
    _Field("id", _S, omitempty=True),
    _Field("parent", _S, omitempty=True),
    _Field("comment", _S, omitempty=True),
    _Field("created", _T),
    _Field("container", _S, omitempty=True),
    _Field("container_config", _CONTAINER_CONFIG, omitempty=True),
    _Field("docker_version", _S, omitempty=True),
    _Field("author", _S, omitempty=True),
    _Field("config", _Pointer(_CONTAINER_CONFIG), omitempty=True),
    _Field("architecture", _S, omitempty=True),
    _Field("variant", _S, omitempty=True),
    _Field("os", _S, omitempty=True),
    _Field("Size", _I, omitempty=True),
)
_V1_IMAGE: Final = _Struct("image.V1Image", _V1_FIELDS)

_ROOTFS: Final = _Struct(
    "image.RootFS",
    (_Field("type", _S), _Field("diff_ids", _Slice(_S), omitempty=True)),
)
_HISTORY: Final = _Struct(
    "image.History",
    (
        _Field("created", _T),
        _Field("author", _S, omitempty=True),
        _Field("created_by", _S, omitempty=True),
        _Field("comment", _S, omitempty=True),
        _Field("empty_layer", _B, omitempty=True),
    ),
)
# image.Image embeds V1Image; its own "parent" shadows V1Image.parent.
_OUTER_PARENT: Final = "image.parent"
_IMAGE: Final = _Struct(
    "image.Image",
    (
        *(f for f in _V1_FIELDS if f.name != "parent"),
        _Field(_OUTER_PARENT, _S, omitempty=True),
        _Field("rootfs", _Pointer(_ROOTFS), omitempty=True),
        _Field("history", _Slice(_HISTORY), omitempty=True),
        _Field("os.version", _S, omitempty=True),
        _Field("os.features", _Slice(_S), omitempty=True),
    ),
)


def _json_name(go_field: _Field) -> str:
    return "parent" if go_field.name == _OUTER_PARENT else go_field.name


@dataclass(slots=True)
class GoSlice:
    """A Go slice: a backing array (its length is the capacity) and a length."""

    backing: list[object]
    length: int

    def items(self) -> list[object]:
        """The elements in ``[0, len)``."""
        return self.backing[: self.length]


GoStruct = dict[str, object]


def _zero(go_type: _GoType) -> object:
    if isinstance(go_type, _Struct):
        return {f.name: _zero(f.type) for f in go_type.fields}
    if go_type is _S:
        return ""
    if go_type is _B:
        return False
    if go_type is _I:
        return 0
    if go_type is _T:
        return ZERO_TIME
    return None  # pointers, slices, maps, StrSlice


# ---------------------------------------------------------------------------
# Decoding (Go's decodeState semantics for the types above)
# ---------------------------------------------------------------------------


def fold_key(key: str) -> str:
    """Fold a key the way Go 1.19 matches it against an ASCII field name."""
    folded = []
    for char in key:
        if "A" <= char <= "Z":
            folded.append(char.lower())
        elif char == "\u212a":
            folded.append("k")
        elif char == "\u017f":
            folded.append("s")
        else:
            folded.append(char)
    return "".join(folded)


def _find_field(struct: _Struct, key: str) -> _Field | None:
    for go_field in struct.fields:
        if _json_name(go_field) == key:
            return go_field
    folded = fold_key(key)
    for go_field in struct.fields:
        if _json_name(go_field).lower() == folded:
            return go_field
    return None


def _type_error(node: JsonValue, go_type: _GoType, path: str) -> InvalidManifestError:
    kind = type(node).__name__.removeprefix("Json").lower()
    if isinstance(go_type, _Scalar):
        type_name = go_type.value
    elif isinstance(go_type, _Struct):
        type_name = go_type.name
    else:
        type_name = type(go_type).__name__.strip("_").lower()
    return InvalidManifestError(
        f"image config: cannot unmarshal {kind} into field {path} of type {type_name}"
    )


def _decode_int(node: JsonNumber, go_type: _GoType, path: str) -> int:
    literal = node.literal
    digits = literal.removeprefix("-")
    if not digits.isdigit() or not _INT64_MIN <= int(literal) <= _INT64_MAX:
        raise _type_error(node, go_type, path)
    return int(literal)


def _decode_strslice(node: JsonValue, path: str) -> list[str]:
    if isinstance(node, JsonString):
        return [node.value]
    if not isinstance(node, JsonArray):
        raise _type_error(node, _SS, path)
    result = []
    for item in node.items:
        if isinstance(item, JsonString):
            result.append(item.value)
        elif isinstance(item, JsonNull):
            result.append("")
        else:
            raise _type_error(item, _SS, path)
    return result


def _decode_scalar(go_type: _Scalar, node: JsonValue, current: object, path: str) -> object:
    if isinstance(node, JsonNull):
        return None if go_type is _SS else current
    if go_type is _S and isinstance(node, JsonString):
        return node.value
    if go_type is _B and isinstance(node, JsonBool):
        return node.value
    if go_type is _I and isinstance(node, JsonNumber):
        return _decode_int(node, go_type, path)
    if go_type is _T:
        return GoTime.parse_json(node.raw if isinstance(node, JsonString) else "")
    if go_type is _SS:
        return _decode_strslice(node, path)
    raise _type_error(node, go_type, path)


def _decode_struct(struct: _Struct, node: JsonObject, current: GoStruct, path: str) -> GoStruct:
    for key, value in node.members:
        go_field = _find_field(struct, key)
        if go_field is not None:
            sub_path = f"{path}.{_json_name(go_field)}" if path else _json_name(go_field)
            current[go_field.name] = _decode(go_field.type, value, current[go_field.name], sub_path)
    return current


def _decode_slice(go_type: _Slice, node: JsonArray, current: object, path: str) -> GoSlice:
    """Go's ``decodeState.array`` into a slice, reusing the existing backing array."""
    if isinstance(current, GoSlice):
        backing, length = current.backing, current.length
    else:
        backing, length = [], 0
    index = 0
    for item in node.items:
        capacity = len(backing)
        if index >= capacity:
            new_capacity = max(capacity + capacity // 2, 4)
            fresh = [_zero(go_type.elem) for _ in range(new_capacity - length)]
            backing = backing[:length] + fresh
        length = max(length, index + 1)
        backing[index] = _decode(go_type.elem, item, backing[index], f"{path}[{index}]")
        index += 1
    if index == 0:
        return GoSlice([], 0)
    return GoSlice(backing, min(length, index))


def _decode_map(go_type: _Map, node: JsonObject, current: object, path: str) -> dict[str, object]:
    result: dict[str, object] = current if isinstance(current, dict) else {}
    for key, value in node.members:
        result[key] = _decode(go_type.elem, value, _zero(go_type.elem), f"{path}[{key!r}]")
    return result


def _decode(go_type: _GoType, node: JsonValue, current: object, path: str) -> object:
    """Decode ``node`` into a value of ``go_type`` whose present value is ``current``."""
    if isinstance(go_type, _Scalar):
        return _decode_scalar(go_type, node, current, path)
    if isinstance(go_type, _Struct):
        if isinstance(node, JsonNull):
            return current
        if not isinstance(node, JsonObject):
            raise _type_error(node, go_type, path)
        assert isinstance(current, dict)
        return _decode_struct(go_type, node, current, path)
    if isinstance(node, JsonNull):
        return None
    if isinstance(go_type, _Pointer):
        target = current if current is not None else _zero(go_type.elem)
        return _decode(go_type.elem, node, target, path)
    if isinstance(go_type, _Slice) and isinstance(node, JsonArray):
        return _decode_slice(go_type, node, current, path)
    if isinstance(go_type, _Map) and isinstance(node, JsonObject):
        return _decode_map(go_type, node, current, path)
    raise _type_error(node, go_type, path)


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

_ESCAPE_RE: Final = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029]')
_ESCAPES: Final = {
    **{chr(code): f"\\u{code:04x}" for code in range(0x20)},
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_ESCAPES_GO122: Final = {**_ESCAPES, "\b": "\\b", "\f": "\\f"}


def encode_string(value: str, go122_escaping: bool = False) -> str:
    """A JSON string literal as Go's encoder writes it with HTML escaping on.

    ``go122_escaping`` selects Go >= 1.22, which writes ``\\b`` and ``\\f`` instead
    of ``\\u0008`` and ``\\u000c``.
    """
    table = _ESCAPES_GO122 if go122_escaping else _ESCAPES
    return '"' + _ESCAPE_RE.sub(lambda match: table[match.group()], value) + '"'


def _is_empty(go_type: _GoType, value: object) -> bool:
    """Go's ``isEmptyValue`` (what ``omitempty`` drops)."""
    if isinstance(go_type, _Struct) or go_type is _T:
        return False
    if isinstance(go_type, _Pointer):
        return value is None
    if isinstance(value, GoSlice):
        return value.length == 0
    if isinstance(value, list | dict | str):
        return len(value) == 0
    return value is None or value is False or value == 0


def _encode_struct(struct: _Struct, value: GoStruct, go122: bool) -> str:
    members = [
        f"{encode_string(_json_name(f))}:{_encode(f.type, value[f.name], go122)}"
        for f in struct.fields
        if not (f.omitempty and _is_empty(f.type, value[f.name]))
    ]
    return "{" + ",".join(members) + "}"


def _encode(go_type: _GoType, value: object, go122: bool) -> str:
    if isinstance(go_type, _Struct):
        assert isinstance(value, dict)
        return _encode_struct(go_type, value, go122)
    if value is None:
        return "null"
    if isinstance(go_type, _Pointer):
        return _encode(go_type.elem, value, go122)
    if isinstance(value, str):
        return encode_string(value, go122)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, GoTime):
        return '"' + value.format_rfc3339nano() + '"'
    if isinstance(value, GoSlice | list):
        elem: _GoType = go_type.elem if isinstance(go_type, _Slice) else _S
        items = value.items() if isinstance(value, GoSlice) else value
        return "[" + ",".join(_encode(elem, item, go122) for item in items) + "]"
    if isinstance(value, dict) and isinstance(go_type, _Map):
        keys = sorted(value, key=lambda key: key.encode("utf-8"))
        members = [
            f"{encode_string(k, go122)}:{_encode(go_type.elem, value[k], go122)}" for k in keys
        ]
        return "{" + ",".join(members) + "}"
    raise TypeError(f"cannot encode {value!r} as {go_type}")


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


_SETTABLE: Final = frozenset({"id", "parent", "os"})  # the fields V1Record.set_string sets


@dataclass
class V1Record:
    """Docker's ``image.V1Image``: field name -> decoded value (see format section 3.1).

    Only ``id``, ``parent`` and ``os`` change (:meth:`set_string`): :meth:`members` keeps
    the encodings of the other fields, for this record and its copies (a pull encodes the
    same lower-layer record for every layer but the top).
    """

    fields: GoStruct
    _kept: dict[bool, dict[str, str | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def empty(cls, created: GoTime) -> V1Record:
        """The record Docker uses for lower layers: all zero except ``created``."""
        fields = _zero(_V1_IMAGE)
        assert isinstance(fields, dict)
        fields["created"] = created
        return cls(fields)

    def copy(self) -> V1Record:
        """A shallow copy (Go copies the struct by value)."""
        twin = V1Record(dict(self.fields))
        twin._kept = self._kept
        return twin

    def set_string(self, name: str, value: str) -> None:
        """Set one of the string fields ``id``, ``parent`` or ``os``."""
        if name not in _SETTABLE:
            raise KeyError(name)
        self.fields[name] = value

    @property
    def os(self) -> str:
        """The ``os`` field."""
        value = self.fields["os"]
        assert isinstance(value, str)
        return value

    @property
    def created(self) -> GoTime:
        """The ``created`` field."""
        value = self.fields["created"]
        assert isinstance(value, GoTime)
        return value

    def members(self, go122_escaping: bool = False) -> list[tuple[str, str]]:
        """The encoded JSON members in struct order, empty ``omitempty`` ones dropped."""
        kept = self._kept.get(go122_escaping)
        if kept is None:
            kept = self._kept[go122_escaping] = {
                f.name: _member(f, self.fields[f.name], go122_escaping)
                for f in _V1_FIELDS
                if f.name not in _SETTABLE
            }
        found: list[tuple[str, str]] = []
        for f in _V1_FIELDS:
            if f.name in _SETTABLE:
                encoded = _member(f, self.fields[f.name], go122_escaping)
            else:
                encoded = kept[f.name]
            if encoded is not None:
                found.append((f.name, encoded))
        return found


def _member(go_field: _Field, value: object, go122: bool) -> str | None:
    """A struct field's encoded JSON value; None where ``omitempty`` drops it."""
    if go_field.omitempty and _is_empty(go_field.type, value):
        return None
    return _encode(go_field.type, value, go122)


@dataclass
class DecodedConfig:
    """An image config decoded as Docker's ``json.Unmarshal`` into ``image.Image`` does.

    ``raw`` keeps the exact bytes (the image ID is their sha256). Only what dockerdrag
    uses is kept: the V1 record, ``rootfs``, the count of non-empty ``history`` entries,
    ``os.version`` and ``os.features``.
    """

    raw: bytes = field(repr=False)
    v1: V1Record
    rootfs_type: str
    diff_ids: tuple[Digest, ...]
    non_empty_history_entries: int
    os_version: str
    os_features: tuple[str, ...]

    @property
    def os(self) -> str:
        """The image's ``os``."""
        return self.v1.os

    @property
    def created(self) -> GoTime:
        """The image's ``created`` (Go zero time when absent)."""
        return self.v1.created

    def string(self, name: str) -> str:
        """One of the V1 record's string fields (``architecture``, ``variant``, ...)."""
        value = self.v1.fields[name]
        assert isinstance(value, str)
        return value

    def container_config(self) -> GoStruct | None:
        """The ``config`` member (the container config), None when absent or null."""
        value = self.v1.fields["config"]
        return value if isinstance(value, dict) else None


def strings(value: object) -> list[str]:
    """The strings of a decoded Go slice or StrSlice (``[]`` for nil)."""
    if isinstance(value, GoSlice):
        value = value.items()
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _diff_ids(rootfs: GoStruct) -> tuple[Digest, ...]:
    diff_ids: list[Digest] = []
    for index, text in enumerate(strings(rootfs["diff_ids"])):
        diff_ids.append(Digest.from_registry(text, f"image config: rootfs.diff_ids[{index}]"))
    return tuple(diff_ids)


def decode_image_config(data: bytes) -> DecodedConfig:
    """Decode raw config bytes exactly as Docker's ``json.Unmarshal`` into ``image.Image``.

    Raises InvalidManifestError on a syntax error, a type mismatch in any known field,
    a missing ``rootfs`` or a ``rootfs.diff_ids`` entry that is not a sha256 digest.
    """
    document = parse_json(decode_utf8_like_go(data))
    image = _zero(_IMAGE)
    assert isinstance(image, dict)
    if isinstance(document, JsonObject):
        _decode_struct(_IMAGE, document, image, "")
    elif not isinstance(document, JsonNull):
        raise _type_error(document, _IMAGE, "(image)")
    rootfs = image["rootfs"]
    if not isinstance(rootfs, dict):
        raise InvalidManifestError("invalid image JSON, no RootFS key")
    history = image["history"]
    history_items = history.items() if isinstance(history, GoSlice) else []
    non_empty = sum(
        1 for entry in history_items if isinstance(entry, dict) and not entry["empty_layer"]
    )
    rootfs_type = rootfs["type"]
    os_version = image["os.version"]
    assert isinstance(rootfs_type, str) and isinstance(os_version, str)
    return DecodedConfig(
        raw=bytes(data),
        v1=V1Record({f.name: image.get(f.name, "") for f in _V1_FIELDS}),
        rootfs_type=rootfs_type,
        diff_ids=_diff_ids(rootfs),
        non_empty_history_entries=non_empty,
        os_version=os_version,
        os_features=tuple(strings(image["os.features"])),
    )


def encode_value(value: object, go122_escaping: bool = False) -> str:
    """Encode a plain value as Go's encoder would: a dict's members keep the order given
    (a Go struct's field order; pass a map through :func:`go_map_order` first), lists
    as arrays, None as ``null``, strings with :func:`encode_string`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return encode_string(value, go122_escaping)
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_value(item, go122_escaping) for item in value) + "]"
    if isinstance(value, dict):
        members = (
            f"{encode_string(key, go122_escaping)}:{encode_value(item, go122_escaping)}"
            for key, item in value.items()
        )
        return "{" + ",".join(members) + "}"
    raise TypeError(f"cannot encode {value!r}")


def go_map_order(mapping: Mapping[str, object]) -> dict[str, object]:
    """A Go map's member order: keys sorted by their UTF-8 bytes."""
    return {key: mapping[key] for key in sorted(mapping, key=lambda k: k.encode("utf-8"))}


def encode_v1_json(record: V1Record, go122_escaping: bool = False) -> bytes:
    """``json.Marshal(V1Image)``: the per-layer ``json`` file (no trailing newline)."""
    members = record.members(go122_escaping)
    return ("{" + ",".join(f'"{key}":{value}' for key, value in members) + "}").encode("utf-8")


def v1_id_input(
    record: V1Record, layer_id: str, parent: str, go122_escaping: bool = False
) -> bytes:
    """The bytes Docker's ``v1.CreateID`` hashes for a layer's v1 ID.

    ``record`` is taken with ``id`` emptied; ``layer_id`` is the chain ID and ``parent``
    the previous v1 ID, both full ``sha256:`` digests (``parent`` empty for the bottom).
    """
    members = dict(record.members(go122_escaping))
    members.pop("id", None)
    members["layer_id"] = encode_string(layer_id, go122_escaping)
    if parent:
        members["parent"] = encode_string(parent, go122_escaping)
    ordered = sorted(members.items(), key=lambda item: item[0].encode("utf-8"))
    return ("{" + ",".join(f'"{key}":{value}' for key, value in ordered) + "}").encode("utf-8")
