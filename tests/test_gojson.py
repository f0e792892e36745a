"""Go encoding/json emulation of Docker's V1 image record (format section 3)."""

from __future__ import annotations

import pytest

from dockerdrag.digest import Digest
from dockerdrag.errors import InvalidManifestError
from dockerdrag.gojson import (
    GoTime,
    JsonArray,
    JsonObject,
    V1Record,
    decode_image_config,
    encode_string,
    encode_v1_json,
    parse_json,
    v1_id_input,
)

ZERO_CONTAINER_CONFIG = (
    '{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,'
    '"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,'
    '"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,'
    '"Labels":null}'
)


def members(body: str | bytes, go122: bool = False) -> dict[str, str]:
    """Decode a config whose members (besides rootfs) are ``body``; its encoded V1 members."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    config = decode_image_config(
        b'{"rootfs":{"type":"layers"}' + (b"," if raw else b"") + raw + b"}"
    )
    return dict(config.v1.members(go122))


def config_member(body: str, name: str) -> str:
    """The encoded ``name`` member of the decoded ``config`` object ``body``."""
    encoded = members(f'"config":{body}')["config"]
    document = parse_json(encoded)
    assert isinstance(document, JsonObject)
    for key, _ in document.members:
        if key == name:
            start = encoded.index(f'"{name}":') + len(name) + 3
            return _value_text(encoded, start)
    raise KeyError(name)


def _value_text(text: str, start: int) -> str:
    depth, index, in_string = 0, start, False
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:
                return text[start:index]
            depth -= 1
        elif char == "," and depth == 0:
            return text[start:index]
        index += 1
    return text[start:index]


# --- encoding -------------------------------------------------------------------


def test_string_escaping_is_html_safe_like_go() -> None:
    assert encode_string('a<b>&c"\\') == '"a\\u003cb\\u003e\\u0026c\\"\\\\"'
    assert encode_string("\n\r\t\x01\x1f") == '"\\n\\r\\t\\u0001\\u001f"'
    assert encode_string("\u2028\u2029") == '"\\u2028\\u2029"'
    assert encode_string("\x7f é 😀 \ufffd") == '"\x7f é 😀 \ufffd"'
    assert encode_string("/") == '"/"'


def test_b_and_f_escapes_depend_on_go_version() -> None:
    assert encode_string("\b\f") == '"\\u0008\\u000c"'
    assert encode_string("\b\f", go122_escaping=True) == '"\\b\\f"'
    assert members('"author":"\\b"', go122=True)["author"] == '"\\b"'


def test_zero_top_record_has_zero_time_and_container_config() -> None:
    encoded = members("")
    assert encoded == {
        "created": '"0001-01-01T00:00:00Z"',
        "container_config": ZERO_CONTAINER_CONFIG,
    }


def test_lower_layer_record_matches_spec_example() -> None:
    record = V1Record.empty(GoTime.epoch(0))
    record.set_string("id", "f" * 64)
    record.set_string("os", "linux")
    assert (
        encode_v1_json(record)
        == (
            '{"id":"' + "f" * 64 + '","created":"1970-01-01T00:00:00Z",'
            '"container_config":' + ZERO_CONTAINER_CONFIG + ',"os":"linux"}'
        ).encode()
    )


def test_copies_of_an_encoded_record_encode_their_own_id_parent_and_os() -> None:
    lower = V1Record.empty(GoTime.epoch(0))
    first = lower.copy()
    assert encode_v1_json(first) == (
        b'{"created":"1970-01-01T00:00:00Z","container_config":'
        + ZERO_CONTAINER_CONFIG.encode()
        + b"}"
    )
    second = lower.copy()
    second.set_string("id", "a" * 64)
    second.set_string("parent", "b" * 64)
    second.set_string("os", "linux")
    assert (
        encode_v1_json(second)
        == (
            '{"id":"' + "a" * 64 + '","parent":"' + "b" * 64 + '","created":"1970-01-01T00:00:00Z",'
            '"container_config":' + ZERO_CONTAINER_CONFIG + ',"os":"linux"}'
        ).encode()
    )
    assert encode_v1_json(first).startswith(b'{"created":')  # the copies share no id


def test_v1_id_input_sorts_keys_and_adds_layer_id_and_parent() -> None:
    config = decode_image_config(b'{"rootfs":{},"Size":5,"os":"linux","id":"x"}')
    text = v1_id_input(config.v1, "sha256:" + "1" * 64, "sha256:" + "2" * 64).decode()
    assert text.startswith('{"Size":5,"container_config":{')
    assert text.endswith(
        f'"created":"0001-01-01T00:00:00Z","layer_id":"sha256:{"1" * 64}",'
        f'"os":"linux","parent":"sha256:{"2" * 64}"}}'
    )
    assert '"id"' not in text


def test_map_keys_are_sorted_by_utf8_bytes() -> None:
    labels = config_member('{"Labels":{"é":"1","z":"2","Z":"3","a\\u0000":"4"}}', "Labels")
    assert labels == '{"Z":"3","a\\u0000":"4","z":"2","é":"1"}'


def test_sets_are_written_with_empty_objects() -> None:
    body = '{"ExposedPorts":{"80/tcp":{"x":1},"53/udp":null},"Volumes":{"/d":{}}}'
    assert config_member(body, "ExposedPorts") == '{"53/udp":{},"80/tcp":{}}'
    assert config_member(body, "Volumes") == '{"/d":{}}'


def test_omitempty_rules_of_container_config() -> None:
    body = (
        '{"ExposedPorts":{},"Shell":[],"OnBuild":[],"Env":[],"StopTimeout":0,'
        '"Healthcheck":{},"ArgsEscaped":false,"MacAddress":""}'
    )
    encoded = members(f'"config":{body}')["config"]
    assert '"ExposedPorts"' not in encoded
    assert '"Shell"' not in encoded
    assert '"ArgsEscaped"' not in encoded
    assert '"MacAddress"' not in encoded
    assert '"OnBuild":[]' in encoded
    assert '"Env":[]' in encoded
    assert '"StopTimeout":0' in encoded
    assert '"Healthcheck":{}' in encoded


def test_config_absent_null_and_empty() -> None:
    assert "config" not in members("")
    assert "config" not in members('"config":null')
    assert members('"config":{}')["config"] == ZERO_CONTAINER_CONFIG


# --- decoding -------------------------------------------------------------------


def test_invalid_utf8_becomes_one_replacement_per_byte() -> None:
    encoded = members(b'"author":"a\xff\xe6\x97 b\xed\xa0\x80c"')["author"]
    assert encoded == '"a\ufffd\ufffd\ufffd b\ufffd\ufffd\ufffdc"'


def test_surrogate_escapes() -> None:
    body = '"author":"\\ud800 \\udc00 \\ud83d\\ude00 \\udc00\\ud800 \\ud800\\ud83d\\ude00"'
    assert members(body)["author"] == '"\ufffd \ufffd 😀 \ufffd\ufffd \ufffd😀"'


def test_escaped_slash_and_unicode() -> None:
    assert members('"author":"\\/\\u00e9\\u003c"')["author"] == '"/é\\u003c"'


def test_keys_match_case_insensitively_with_go_folding() -> None:
    encoded = members('"Architecture":"amd64","OS":"linux","DOC\u212aER_VER\u017fION":"1"')
    assert encoded["architecture"] == '"amd64"'
    assert encoded["os"] == '"linux"'
    assert encoded["docker_version"] == '"1"'
    assert "author" not in members('"autho\u017f":"x"')  # long s only folds to s


def test_size_key_and_config_parent_and_id() -> None:
    encoded = members('"size":7,"parent":"sha256:1","id":"abc"')
    assert encoded["Size"] == "7"
    assert "parent" not in encoded
    assert encoded["id"] == '"abc"'


def test_duplicate_keys_merge_structs_and_maps() -> None:
    body = (
        '"Config":{"User":"a","Labels":{"x":"1"},"Healthcheck":{"Retries":2}},'
        '"config":{"Domainname":"d","Labels":{"y":null},"Healthcheck":{"Interval":5}},'
        '"author":"first","Author":"second","author":null'
    )
    encoded = members(body)
    assert encoded["author"] == '"second"'
    config = encoded["config"]
    assert '"Domainname":"d","User":"a"' in config
    assert '"Labels":{"x":"1","y":""}' in config
    assert '"Healthcheck":{"Interval":5,"Retries":2}' in config


def test_repeated_lists_refill_in_place_keeping_old_elements_for_null() -> None:
    assert config_member('{"Env":["a","b","c"],"Env":[null,"y"]}', "Env") == '["a","y"]'
    # Go's backing array survives shortening: a null re-exposes the stale element.
    body = '{"Env":["a","b","c"],"Env":["x"],"Env":[null,null]}'
    assert config_member(body, "Env") == '["x","b"]'
    assert config_member('{"Env":["a"],"Env":[]}', "Env") == "[]"
    assert config_member('{"OnBuild":[null]}', "OnBuild") == '[""]'


def test_strslices_start_fresh_and_accept_a_string() -> None:
    assert config_member('{"Cmd":["a","b"],"Cmd":[null]}', "Cmd") == '[""]'
    assert config_member('{"Cmd":"just one"}', "Cmd") == '["just one"]'
    assert config_member('{"Entrypoint":[]}', "Entrypoint") == "[]"
    assert config_member('{"Entrypoint":["a"],"Entrypoint":null}', "Entrypoint") == "null"


def test_null_rules() -> None:
    encoded = members('"container_config":null,"created":null,"os":null,"Size":null')
    assert encoded == {
        "created": '"0001-01-01T00:00:00Z"',
        "container_config": ZERO_CONTAINER_CONFIG,
    }
    body = (
        '{"Env":["a"],"Env":null,"Healthcheck":{"Retries":1},"Healthcheck":null,'
        '"StopTimeout":3,"StopTimeout":null}'
    )
    encoded_config = members(f'"config":{body}')["config"]
    assert '"Env":null' in encoded_config
    assert "Healthcheck" not in encoded_config
    assert "StopTimeout" not in encoded_config


def test_integers_must_be_int64_literals() -> None:
    assert members('"Size":-9223372036854775808')["Size"] == "-9223372036854775808"
    assert members('"Size":-0') == members("")
    for literal in ("1.0", "1e3", "9223372036854775808", '"1"', "true"):
        with pytest.raises(InvalidManifestError):
            members(f'"Size":{literal}')


@pytest.mark.parametrize(
    "body",
    [
        '"architecture":1',
        '"author":true',
        '"config":[]',
        '"config":{"Labels":{"a":1}}',
        '"config":{"ExposedPorts":{"80/tcp":1}}',
        '"config":{"Env":"x"}',
        '"config":{"Cmd":1}',
        '"config":{"Cmd":[1]}',
        '"config":{"Tty":"yes"}',
        '"config":{"Healthcheck":{"Test":"CMD"}}',
        '"container_config":"x"',
        '"created":1',
        '"os.features":"x"',
        '"os.version":1',
        '"history":{}',
        '"history":[{"created":"yesterday"}]',
        '"history":[{"empty_layer":"no"}]',
        '"parent":1',
        '"rootfs":{"diff_ids":"sha256:x"}',
    ],
)
def test_type_mismatches_are_errors(body: str) -> None:
    with pytest.raises(InvalidManifestError):
        members(body)


def test_unknown_keys_are_ignored_whatever_their_type() -> None:
    assert members('"x":{"a":[1,2.5e3,true,null,{"b":"c"}]},"StartInterval":"x"') == members("")


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"[]",
        b"null",
        b'{"os":"linux"}',
        b'{"rootfs":null}',
        b'{"rootfs":{}',
        b'{"rootfs":{}} x',
        b'{"rootfs":{},}',
        b'{"rootfs":{},"a":01}',
        b'{"rootfs":{},"a":"\x01"}',
        b'{"rootfs":{},"a":"\\x"}',
        b'{"rootfs":{},"a":"\\u12"}',
        b'\xef\xbb\xbf{"rootfs":{}}',
        b'{"rootfs":{},"a":tru}',
    ],
)
def test_malformed_documents_are_refused(document: bytes) -> None:
    with pytest.raises(InvalidManifestError):
        decode_image_config(document)


def test_nesting_depth_limit_is_gos() -> None:
    deep = "[" * 9999 + "]" * 9999
    assert members(f'"x":{deep}') == members("")
    too_deep = "[" * 10000 + "]" * 10000
    with pytest.raises(InvalidManifestError):
        members(f'"x":{too_deep}')


def test_parser_keeps_duplicate_keys_and_order() -> None:
    document = parse_json('{"b":1,"a":[2,"x"],"b":null}')
    assert isinstance(document, JsonObject)
    assert [key for key, _ in document.members] == ["b", "a", "b"]
    assert isinstance(document.members[1][1], JsonArray)


def test_diff_ids_and_history_count() -> None:
    config = decode_image_config(
        b'{"rootfs":{"type":"layers","diff_ids":["sha256:'
        + b"a" * 64
        + b'","sha256:'
        + b"b" * 64
        + b'"]},"history":[{"empty_layer":true},{},{"created":"2020-01-01T00:00:00Z"}]}'
    )
    assert config.diff_ids == (Digest("a" * 64), Digest("b" * 64))
    assert config.non_empty_history_entries == 2


# --- time -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "formatted"),
    [
        ("2023-01-02T03:04:05Z", "2023-01-02T03:04:05Z"),
        ("2022-12-31T23:59:59.500000000+02:00", "2022-12-31T23:59:59.5+02:00"),
        ("1969-07-20T20:17:40.123456789012-00:00", "1969-07-20T20:17:40.123456789Z"),
        ("2020-02-02T02:02:02,25+05:30", "2020-02-02T02:02:02.25+05:30"),
        ("2200-01-01T00:00:00.000000001-09:45", "2200-01-01T00:00:00.000000001-09:45"),
        ("2020-02-02T2:02:02+00:00", "2020-02-02T02:02:02Z"),
        ("2020-02-29T00:00:00.0Z", "2020-02-29T00:00:00Z"),
        ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
    ],
)
def test_time_parse_and_format(raw: str, formatted: str) -> None:
    assert GoTime.parse_json(f'"{raw}"').format_rfc3339nano() == formatted


@pytest.mark.parametrize(
    "raw",
    [
        "2023-01-02t03:04:05Z",
        "2023-01-02T03:04:05z",
        "2023-01-02T03:04:05",
        "2023-01-02 03:04:05Z",
        "2023-01-02T24:00:00Z",
        "2023-01-02T03:60:00Z",
        "2023-01-02T03:04:60Z",
        "2023-13-02T03:04:05Z",
        "2023-02-29T03:04:05Z",
        "2023-1-02T03:04:05Z",
        "23-01-02T03:04:05Z",
        "2023-01-02T03:04:05.Z",
        "2023-01-02T03:04:05+0100",
        "2023-01-02T03:04:05Z ",
        "\\u0032023-01-02T03:04:05Z",
    ],
)
def test_time_parse_rejects(raw: str) -> None:
    with pytest.raises(InvalidManifestError):
        GoTime.parse_json(f'"{raw}"')
    with pytest.raises(InvalidManifestError):
        members(f'"created":"{raw}"')


def test_time_unix_seconds_honour_offset() -> None:
    assert GoTime.parse_json('"2023-01-02T03:04:05Z"').unix_seconds() == 1672628645
    assert GoTime.parse_json('"2023-01-02T05:04:05.9+02:00"').unix_seconds() == 1672628645
    assert GoTime.parse_json('"1969-12-31T23:59:59.5Z"').unix_seconds() == -1


def test_epoch_in_daemon_time_zone() -> None:
    assert GoTime.epoch(0).format_rfc3339nano() == "1970-01-01T00:00:00Z"
    assert GoTime.epoch(3600).format_rfc3339nano() == "1970-01-01T01:00:00+01:00"
    assert GoTime.epoch(-5 * 3600).format_rfc3339nano() == "1969-12-31T19:00:00-05:00"
    assert GoTime.epoch(-5 * 3600).unix_seconds() == 0
