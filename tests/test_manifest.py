"""Manifest/index/config parsing, strict validation (M1-M6) and platform selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockerdrag.digest import Digest
from dockerdrag.errors import (
    IntegrityError,
    InvalidManifestError,
    PlatformNotFoundError,
)
from dockerdrag.image_config import MAX_CONFIG_BYTES, ImageConfig, parse_config
from dockerdrag.manifest import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_manifest,
    select_manifest,
)
from dockerdrag.media_types import (
    ACCEPT_MANIFEST_TYPES,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
)
from dockerdrag.platform import Platform

FIXTURES = Path(__file__).parent / "fixtures" / "docker-save-20.10"

H1, H2, H3, H4, H5, H6 = (c * 64 for c in "123456")
D1, D2, D3, D4, D5, D6 = (f"sha256:{h}" for h in (H1, H2, H3, H4, H5, H6))


def desc(media_type: str, digest: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def oci_manifest(**override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": desc(MEDIA_TYPE_OCI_CONFIG, D1, 100),
        "layers": [desc(MEDIA_TYPE_OCI_LAYER_GZIP, D2, 200)],
    }
    doc.update(override)
    return {k: v for k, v in doc.items() if v is not ...}


def docker_manifest(**override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
        "config": desc(MEDIA_TYPE_DOCKER_CONFIG, D1, 100),
        "layers": [desc(MEDIA_TYPE_DOCKER_LAYER_GZIP, D2, 200)],
    }
    doc.update(override)
    return {k: v for k, v in doc.items() if v is not ...}


def oci_index(**override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": [
            desc(
                MEDIA_TYPE_OCI_MANIFEST, D1, 500, platform={"os": "linux", "architecture": "amd64"}
            ),
        ],
    }
    doc.update(override)
    return {k: v for k, v in doc.items() if v is not ...}


def raw(doc: object) -> bytes:
    return json.dumps(doc, indent=3).encode()


# --- constants -----------------------------------------------------------------------------


def test_constants() -> None:
    assert set(ACCEPT_MANIFEST_TYPES) == {
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
    }
    assert MAX_MANIFEST_BYTES == 4 * 1024 * 1024
    assert MAX_CONFIG_BYTES >= 1024 * 1024


# --- valid documents ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "content_type", "media_type"),
    [
        (oci_manifest, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_MANIFEST),
        (oci_manifest, None, MEDIA_TYPE_OCI_MANIFEST),
        (oci_manifest, "application/json", MEDIA_TYPE_OCI_MANIFEST),
        (oci_manifest, "application/octet-stream", MEDIA_TYPE_OCI_MANIFEST),
        (oci_manifest, "", MEDIA_TYPE_OCI_MANIFEST),
        (oci_manifest, MEDIA_TYPE_OCI_MANIFEST + "; charset=utf-8", MEDIA_TYPE_OCI_MANIFEST),
        (oci_manifest, MEDIA_TYPE_OCI_MANIFEST.upper(), MEDIA_TYPE_OCI_MANIFEST),
        (docker_manifest, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST),
        (docker_manifest, "application/json", MEDIA_TYPE_DOCKER_MANIFEST),
    ],
)
def test_parse_image_manifest(builder: Any, content_type: str | None, media_type: str) -> None:
    body = raw(builder())
    m = parse_manifest(body, content_type)
    assert isinstance(m, ImageManifest)
    assert m.media_type == media_type
    assert m.digest == Digest.of(body)
    assert m.raw == body
    assert m.size == len(body)
    assert m.config.digest == Digest.parse(D1)
    assert m.config.size == 100
    assert [layer.digest for layer in m.layers] == [Digest.parse(D2)]
    assert m.descriptor() == Descriptor(media_type, m.digest, len(body))


def test_manifest_without_media_type_is_typed_by_header_or_shape() -> None:
    m = parse_manifest(raw(oci_manifest(mediaType=...)), MEDIA_TYPE_OCI_MANIFEST)
    assert m.media_type == MEDIA_TYPE_OCI_MANIFEST
    m = parse_manifest(raw(oci_manifest(mediaType=...)), MEDIA_TYPE_DOCKER_MANIFEST)
    assert m.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    m = parse_manifest(raw(oci_manifest(mediaType=...)), "application/json")
    assert m.media_type == MEDIA_TYPE_OCI_MANIFEST
    i = parse_manifest(raw(oci_index(mediaType=...)), None)
    assert isinstance(i, ImageIndex)
    assert i.media_type == MEDIA_TYPE_OCI_INDEX


def test_manifest_with_no_layers_parses() -> None:
    m = parse_manifest(raw(oci_manifest(layers=[])), None)
    assert isinstance(m, ImageManifest)
    assert m.layers == ()


def test_descriptor_details() -> None:
    layer = desc(
        MEDIA_TYPE_DOCKER_FOREIGN_LAYER,
        D3,
        0,
        urls=["https://mcr.microsoft.com/v2/x/blobs/" + D3, "http://example.com/b"],
        annotations={"a": "1", "b": "2"},
    )
    m = parse_manifest(raw(docker_manifest(layers=[layer])), MEDIA_TYPE_DOCKER_MANIFEST)
    assert isinstance(m, ImageManifest)
    d = m.layers[0]
    assert d.size == 0
    assert d.is_foreign
    assert d.urls == ("https://mcr.microsoft.com/v2/x/blobs/" + D3, "http://example.com/b")
    assert dict(d.annotations) == {"a": "1", "b": "2"}
    with pytest.raises(TypeError):
        d.annotations["c"] = "3"  # type: ignore[index]
    hash(d)  # descriptors are hashable despite the mapping
    assert d.to_json() == layer


def test_fixture_manifests_and_configs() -> None:
    seen = 0
    for registry in sorted(FIXTURES.glob("*/registry")):
        body = (registry / "manifest.json").read_bytes()
        m = parse_manifest(body, None)
        assert isinstance(m, ImageManifest)
        config = parse_config((registry / m.config.digest.hex).read_bytes())
        assert config.digest == m.config.digest
        assert len(config.diff_ids) == len(m.layers)
        assert config.platform == Platform("linux", "amd64")
        seen += 1
    assert seen >= 10


# --- index and platform selection ------------------------------------------------------


def multi_platform_index() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": [
            desc(MEDIA_TYPE_OCI_MANIFEST, D1, 1, platform={"os": "linux", "architecture": "amd64"}),
            desc(
                MEDIA_TYPE_OCI_MANIFEST,
                D2,
                2,
                platform={"os": "linux", "architecture": "arm64", "variant": "v8"},
            ),
            desc(
                MEDIA_TYPE_OCI_MANIFEST,
                D3,
                3,
                platform={"os": "linux", "architecture": "arm", "variant": "v6"},
            ),
            desc(
                MEDIA_TYPE_OCI_MANIFEST,
                D4,
                4,
                platform={"os": "unknown", "architecture": "unknown"},
                annotations={
                    "vnd.docker.reference.digest": D1,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            ),
        ],
    }


def parsed_index(doc: dict[str, Any] | None = None) -> ImageIndex:
    index = parse_manifest(raw(doc or multi_platform_index()), MEDIA_TYPE_OCI_INDEX)
    assert isinstance(index, ImageIndex)
    return index


def test_index_platforms_skip_attestations() -> None:
    index = parsed_index()
    assert len(index.manifests) == 4
    assert index.manifests[3].is_attestation
    assert not index.manifests[0].is_attestation
    assert [str(d.platform) for d in index.platforms()] == [
        "linux/amd64",
        "linux/arm64/v8",  # listed as the registry wrote it
        "linux/arm/v6",
    ]


@pytest.mark.parametrize(
    ("wanted", "digest"),
    [
        ("linux/amd64", D1),
        ("linux/x86_64", D1),
        ("linux/arm64", D2),
        ("linux/arm64/v8", D2),
        ("linux/aarch64", D2),
        ("linux/arm/v7", D3),  # falls back to v6
        ("linux/arm", D3),
        ("linux/arm/v6", D3),
    ],
)
def test_select_manifest(wanted: str, digest: str) -> None:
    assert select_manifest(parsed_index(), Platform.parse(wanted)).digest == Digest.parse(digest)


@pytest.mark.parametrize("wanted", ["linux/arm/v5", "linux/s390x", "windows/amd64", "linux/386"])
def test_select_manifest_not_found(wanted: str) -> None:
    with pytest.raises(PlatformNotFoundError) as info:
        select_manifest(parsed_index(), Platform.parse(wanted))
    err = info.value
    assert err.available == (
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
        Platform("linux", "arm", "v6"),
    )
    message = str(err)
    assert str(Platform.parse(wanted)) in message
    assert "linux/amd64, linux/arm64/v8, linux/arm/v6" in message
    assert "unknown" not in message
    assert err.exit_code == 4


def test_select_manifest_prefers_best_variant_then_index_order() -> None:
    doc = multi_platform_index()
    doc["manifests"] = [
        desc(
            MEDIA_TYPE_OCI_MANIFEST,
            D1,
            1,
            platform={"os": "linux", "architecture": "arm", "variant": "v5"},
        ),
        desc(
            MEDIA_TYPE_OCI_MANIFEST,
            D2,
            1,
            platform={"os": "linux", "architecture": "arm", "variant": "v6"},
        ),
        desc(
            MEDIA_TYPE_OCI_MANIFEST,
            D3,
            1,
            platform={"os": "linux", "architecture": "arm", "variant": "v7"},
        ),
        desc(MEDIA_TYPE_OCI_MANIFEST, D4, 1, platform={"os": "linux", "architecture": "armhf"}),
    ]
    index = parsed_index(doc)
    assert select_manifest(index, Platform.parse("linux/arm/v7")).digest == Digest.parse(D3)
    assert select_manifest(index, Platform.parse("linux/arm/v6")).digest == Digest.parse(D2)
    assert select_manifest(index, Platform.parse("linux/arm/v5")).digest == Digest.parse(D1)


def test_select_manifest_windows_os_version() -> None:
    doc = multi_platform_index()
    doc["manifests"] = [
        desc(
            MEDIA_TYPE_DOCKER_MANIFEST,
            D1,
            1,
            platform={"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.5329"},
        ),
        desc(
            MEDIA_TYPE_DOCKER_MANIFEST,
            D2,
            1,
            platform={"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2227"},
        ),
    ]
    doc["mediaType"] = MEDIA_TYPE_DOCKER_MANIFEST_LIST
    index = parse_manifest(raw(doc), MEDIA_TYPE_DOCKER_MANIFEST_LIST)
    assert isinstance(index, ImageIndex)
    pick = select_manifest(index, Platform.parse("windows(10.0.20348)/amd64"))
    assert pick.digest == Digest.parse(D2)
    assert select_manifest(index, Platform.parse("windows/amd64")).digest == Digest.parse(D1)
    with pytest.raises(PlatformNotFoundError) as info:
        select_manifest(index, Platform.parse("windows(10.0.26100)/amd64"))
    assert "windows(10.0.17763.5329)/amd64" in str(info.value)


def test_select_manifest_entry_without_platform_is_last_resort() -> None:
    doc = multi_platform_index()
    doc["manifests"].insert(0, desc(MEDIA_TYPE_OCI_MANIFEST, D5, 1))
    index = parsed_index(doc)
    assert select_manifest(index, Platform.parse("linux/amd64")).digest == Digest.parse(D1)
    assert select_manifest(index, Platform.parse("linux/s390x")).digest == Digest.parse(D5)


def test_attestation_only_index() -> None:
    doc = multi_platform_index()
    doc["manifests"] = doc["manifests"][3:]
    index = parsed_index(doc)
    assert index.platforms() == []
    with pytest.raises(PlatformNotFoundError, match="available platforms: none") as info:
        select_manifest(index, Platform.parse("linux/amd64"))
    assert info.value.available == ()


def test_attestation_by_annotation_only() -> None:
    d = Descriptor(
        MEDIA_TYPE_OCI_MANIFEST,
        Digest.parse(D1),
        1,
        Platform("linux", "amd64"),
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
    )
    assert d.is_attestation
    assert not Descriptor(MEDIA_TYPE_OCI_MANIFEST, Digest.parse(D1), 1).is_attestation


# --- invalid documents -----------------------------------------------------------------


def _bad(body: bytes, content_type: str | None, why: str) -> None:
    with pytest.raises(InvalidManifestError) as info:
        parse_manifest(body, content_type)
    assert why in str(info.value), str(info.value)
    assert isinstance(info.value, IntegrityError)
    assert info.value.exit_code == 6


INVALID: list[tuple[str, bytes, str | None, str]] = [
    # (id, body, content type, expected message part)
    ("not-json", b"{", None, "not valid JSON"),
    ("empty", b"", None, "not valid JSON"),
    ("array", b"[]", None, "must be a JSON object"),
    ("string", b'"x"', None, "must be a JSON object"),
    ("null", b"null", None, "must be a JSON object"),
    ("bad-utf8", b'{"schemaVersion":2,"x":"\xff"}', None, "not valid UTF-8"),
    ("bom", b"\xef\xbb\xbf" + raw(oci_manifest()), None, "not valid JSON"),
    ("nan", b'{"schemaVersion": NaN}', None, "NaN"),
    (
        "dup-top",
        b'{"schemaVersion":2,"mediaType":"%s","mediaType":"%s","config":{},"layers":[]}'
        % (MEDIA_TYPE_OCI_MANIFEST.encode(), MEDIA_TYPE_OCI_INDEX.encode()),
        None,
        "duplicate key 'mediaType'",
    ),
    (
        "dup-config",
        raw(oci_manifest())[:-2] + b', "config": {}}',
        None,
        "duplicate key 'config'",
    ),
    (
        "dup-nested",
        b'{"schemaVersion":2,"config":{"mediaType":"a","digest":"%s","digest":"%s","size":1},'
        b'"layers":[]}' % (D1.encode(), D2.encode()),
        None,
        "duplicate key 'digest'",
    ),
    (
        "case-variant-key",
        raw({**oci_manifest(), "Layers": []}),
        None,
        "'Layers' is ambiguous",
    ),
    (
        "case-variant-descriptor-key",
        raw(oci_manifest(config={**desc(MEDIA_TYPE_OCI_CONFIG, D1), "Digest": D2})),
        None,
        "'Digest' is ambiguous",
    ),
    (
        "schema1-body",
        raw({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}),
        None,
        "schema 1 manifests are not supported",
    ),
    (
        "schema1-header",
        raw(oci_manifest()),
        MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST,
        "schema 1 manifests are not supported",
    ),
    (
        "schema1-mediatype",
        raw(oci_manifest(mediaType="application/vnd.docker.distribution.manifest.v1+json")),
        None,
        "schema 1 manifests are not supported",
    ),
    (
        "schema1-mediatype-only",
        raw({"mediaType": MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST, "fsLayers": []}),
        None,
        "schema 1 manifests are not supported",
    ),
    ("schema3", raw(oci_manifest(schemaVersion=3)), None, "schemaVersion 3"),
    ("schema-str", raw(oci_manifest(schemaVersion="2")), None, "schemaVersion '2'"),
    ("schema-true", raw(oci_manifest(schemaVersion=True)), None, "schemaVersion True"),
    ("schema-missing", raw(oci_manifest(schemaVersion=...)), None, "schemaVersion None"),
    (
        "ct-mismatch",
        raw(oci_manifest()),
        MEDIA_TYPE_DOCKER_MANIFEST,
        "does not match the Content-Type",
    ),
    (
        "ct-mismatch-index",
        raw(oci_index()),
        MEDIA_TYPE_OCI_MANIFEST,
        "does not match the Content-Type",
    ),
    (
        "ct-unknown",
        raw(oci_manifest()),
        "application/vnd.example+json",
        "unsupported manifest Content-Type",
    ),
    (
        "manifest-with-manifests",
        raw(oci_manifest(manifests=[])),
        None,
        "ambiguous manifest",
    ),
    (
        "index-with-layers",
        raw(oci_index(layers=[])),
        None,
        "ambiguous",
    ),
    (
        "index-with-config",
        raw(oci_index(config=desc(MEDIA_TYPE_OCI_CONFIG, D1))),
        MEDIA_TYPE_OCI_INDEX,
        "ambiguous",
    ),
    (
        "untyped-ambiguous",
        raw({"schemaVersion": 2, "manifests": [], "layers": []}),
        "application/json",
        "ambiguous",
    ),
    (
        "header-typed-index-with-config",
        raw({"schemaVersion": 2, "config": desc(MEDIA_TYPE_OCI_CONFIG, D1), "layers": []}),
        MEDIA_TYPE_OCI_INDEX,
        "ambiguous index",
    ),
    ("untyped-empty", raw({"schemaVersion": 2}), None, "cannot tell what this document is"),
    (
        "unknown-mediatype",
        raw(oci_manifest(mediaType="application/vnd.example+json")),
        None,
        "unsupported manifest mediaType",
    ),
    ("mediatype-int", raw(oci_manifest(mediaType=1)), None, "mediaType must be a string"),
    ("no-config", raw(oci_manifest(config=...)), None, "manifest has no config"),
    ("config-not-object", raw(oci_manifest(config=[])), None, "must be a JSON object"),
    ("layers-missing", raw(oci_manifest(layers=...)), None, "layers must be an array"),
    ("layers-object", raw(oci_manifest(layers={})), None, "layers must be an array"),
    ("manifests-object", raw(oci_index(manifests={})), None, "manifests must be an array"),
    (
        "digest-md5",
        raw(
            oci_manifest(config=desc(MEDIA_TYPE_OCI_CONFIG, "md5:d41d8cd98f00b204e9800998ecf8427e"))
        ),
        None,
        "only sha256 is supported",
    ),
    (
        "digest-traversal",
        raw(oci_manifest(layers=[desc(MEDIA_TYPE_OCI_LAYER_GZIP, "sha256:../../etc/passwd")])),
        None,
        "manifest layer 0: invalid digest",
    ),
    (
        "digest-uppercase",
        raw(oci_manifest(layers=[desc(MEDIA_TYPE_OCI_LAYER_GZIP, "sha256:" + "A" * 64)])),
        None,
        "invalid digest",
    ),
    (
        "digest-missing",
        raw(oci_manifest(config={"mediaType": MEDIA_TYPE_OCI_CONFIG, "size": 1})),
        None,
        "digest must be a string",
    ),
    (
        "size-negative",
        raw(oci_manifest(config=desc(MEDIA_TYPE_OCI_CONFIG, D1, -1))),
        None,
        "out of range",
    ),
    (
        "size-huge",
        raw(oci_manifest(config=desc(MEDIA_TYPE_OCI_CONFIG, D1, 2**63))),
        None,
        "out of range",
    ),
    (
        "size-float",
        raw(oci_manifest(config=desc(MEDIA_TYPE_OCI_CONFIG, D1, 1.5))),  # type: ignore[arg-type]
        None,
        "size must be an integer",
    ),
    (
        "size-string",
        raw(oci_manifest(config=desc(MEDIA_TYPE_OCI_CONFIG, D1, "1"))),  # type: ignore[arg-type]
        None,
        "size must be an integer",
    ),
    (
        "size-bool",
        raw(oci_manifest(config=desc(MEDIA_TYPE_OCI_CONFIG, D1, True))),
        None,
        "size must be an integer",
    ),
    (
        "size-missing",
        raw(oci_manifest(config={"mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": D1})),
        None,
        "size must be an integer",
    ),
    (
        "descriptor-mediatype-missing",
        raw(oci_manifest(layers=[{"digest": D2, "size": 1}])),
        None,
        "mediaType must be a non-empty string",
    ),
    (
        "url-file",
        raw(
            oci_manifest(
                layers=[desc(MEDIA_TYPE_DOCKER_FOREIGN_LAYER, D2, urls=["file:///etc/passwd"])]
            )
        ),
        None,
        "is not an http(s) URL",
    ),
    (
        "url-ftp",
        raw(oci_manifest(layers=[desc(MEDIA_TYPE_DOCKER_FOREIGN_LAYER, D2, urls=["ftp://x/y"])])),
        None,
        "is not an http(s) URL",
    ),
    (
        "url-relative",
        raw(oci_manifest(layers=[desc(MEDIA_TYPE_DOCKER_FOREIGN_LAYER, D2, urls=["/v2/x"])])),
        None,
        "is not an http(s) URL",
    ),
    (
        "urls-string",
        raw(oci_manifest(layers=[desc(MEDIA_TYPE_DOCKER_FOREIGN_LAYER, D2, urls="https://x/")])),
        None,
        "urls must be an array",
    ),
    (
        "annotations-int",
        raw(oci_manifest(layers=[desc(MEDIA_TYPE_OCI_LAYER_GZIP, D2, annotations={"a": 1})])),
        None,
        "annotations must be an object of strings",
    ),
    (
        "platform-bad",
        raw(oci_index(manifests=[desc(MEDIA_TYPE_OCI_MANIFEST, D1, platform={"os": "linux"})])),
        None,
        "index entry 0: descriptor platform: 'architecture' must be a string",
    ),
    (
        "platform-string",
        raw(oci_index(manifests=[desc(MEDIA_TYPE_OCI_MANIFEST, D1, platform="linux/amd64")])),
        None,
        "platform must be a JSON object",
    ),
    (
        "platform-case-variant",
        raw(
            oci_index(
                manifests=[
                    desc(
                        MEDIA_TYPE_OCI_MANIFEST,
                        D1,
                        platform={"os": "linux", "architecture": "amd64", "Architecture": "arm64"},
                    )
                ]
            )
        ),
        None,
        "'Architecture' is ambiguous",
    ),
    (
        "artifact-type-int",
        raw(oci_manifest(layers=[desc(MEDIA_TYPE_OCI_LAYER_GZIP, D2, artifactType=1)])),
        None,
        "artifactType must be a string",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [pytest.param(b, c, w, id=i) for i, b, c, w in INVALID],
)
def test_parse_manifest_rejects(body: bytes, content_type: str | None, why: str) -> None:
    _bad(body, content_type, why)


def test_oversized_manifest() -> None:
    doc = oci_manifest(annotations={"pad": "x" * MAX_MANIFEST_BYTES})
    _bad(raw(doc), None, "too large")


def test_manifest_at_size_limit_is_accepted() -> None:
    body = raw(oci_manifest())
    padded = body + b" " * (MAX_MANIFEST_BYTES - len(body))
    assert len(padded) == MAX_MANIFEST_BYTES
    assert isinstance(parse_manifest(padded, None), ImageManifest)


def test_deeply_nested_json_is_an_invalid_manifest() -> None:
    _bad(b"[" * 100_000 + b"]" * 100_000, None, "not valid JSON")


# --- image config ------------------------------------------------------------------------


def config_doc(**override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "created": "2024-01-02T03:04:05Z",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hi"],
            "Env": ["PATH=/bin"],
            "Labels": {"a": "1"},
            "WorkingDir": "/w",
            "User": "1000",
        },
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    }
    doc.update(override)
    return {k: v for k, v in doc.items() if v is not ...}


def test_parse_config() -> None:
    body = json.dumps(config_doc()).encode()
    c = parse_config(body)
    assert isinstance(c, ImageConfig)
    assert c.raw == body
    assert c.digest == Digest.of(body)
    assert c.diff_ids == (Digest.parse(D1), Digest.parse(D2))
    assert c.platform == Platform("linux", "arm64")
    assert c.created == "2024-01-02T03:04:05Z"
    assert c.entrypoint == ("/bin/sh", "-c")
    assert c.cmd == ("echo hi",)
    assert c.env == ("PATH=/bin",)
    assert dict(c.labels) == {"a": "1"}
    assert c.working_dir == "/w"
    assert c.user == "1000"
    hash(c)


def test_parse_config_minimal() -> None:
    c = parse_config(
        b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    )
    assert c.diff_ids == ()
    assert c.created is None
    assert c.entrypoint is None and c.cmd is None
    assert c.env == () and dict(c.labels) == {}
    assert c.platform == Platform("linux", "amd64")


def test_parse_config_windows_platform() -> None:
    c = parse_config(
        json.dumps(
            config_doc(
                architecture="amd64", os="windows", variant=..., **{"os.version": "10.0.17763.1"}
            )
        ).encode()
    )
    assert c.platform == Platform("windows", "amd64", None, "10.0.17763.1")


def test_parse_config_reads_like_go() -> None:
    """Docker accepts these (fixture edge1); we must read the same values."""
    body = (
        b'{"Architecture":"amd64","OS":"linux","Created":"1969-07-20T20:17:40Z",'
        b'"Config":{"env":["A=1",null],"CMD":null,"entrypoint":"/bin/run me",'
        b'"Labels":{"n":null,"x":"y"}},"config":{"User":"merged"},'
        b'"rootfs":{"type":"layers","diff_ids":["' + D1.encode() + b'"]},'
        b'"ROOTFS":{"diff_ids":["' + D2.encode() + b'"]},'
        b'"comment":"bad \xff utf8 \\ud800 lone"}'
    )
    c = parse_config(body)
    assert c.platform == Platform("linux", "amd64")
    assert c.created == "1969-07-20T20:17:40Z"
    assert c.env == ("A=1", "")
    assert c.cmd is None
    assert c.entrypoint == ("/bin/run me",)
    assert dict(c.labels) == {"n": "", "x": "y"}
    assert c.user == "merged"
    # a repeated struct merges; the later list replaces the earlier one
    assert c.diff_ids == (Digest.parse(D2),)


def test_parse_config_null_resets_pointer_struct() -> None:
    body = json.dumps(config_doc()).encode()[:-1] + b',"rootfs":null}'
    with pytest.raises(InvalidManifestError, match="no RootFS"):
        parse_config(body)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (config_doc(rootfs=...), "no RootFS"),
        (config_doc(rootfs=None), "no RootFS"),
        (config_doc(rootfs=[]), "cannot unmarshal array into field rootfs "),
        (config_doc(rootfs={"diff_ids": []}), "unsupported rootfs.type ''"),
        (config_doc(rootfs={"type": "layers+zfs", "diff_ids": []}), "unsupported rootfs.type"),
        (
            config_doc(rootfs={"type": "layers", "diff_ids": D1}),
            "string into field rootfs.diff_ids",
        ),
        (config_doc(rootfs={"type": "layers", "diff_ids": [1]}), "field rootfs.diff_ids[0]"),
        (config_doc(rootfs={"type": "layers", "diff_ids": ["md5:abc"]}), "only sha256"),
        (config_doc(rootfs={"type": "layers", "diff_ids": ["sha256:../.."]}), "diff_ids[0]"),
        (config_doc(rootfs={"type": "layers", "diff_ids": [D1, "x"]}), "diff_ids[1]"),
        (config_doc(architecture=1), "number into field architecture of type string"),
        (config_doc(os=["linux"]), "array into field os of type string"),
        (config_doc(created=5), "cannot parse time"),
        (config_doc(config="x"), "string into field config of type container.Config"),
        (config_doc(config={"Env": "A=1"}), "string into field config.Env of type slice"),
        (config_doc(config={"Cmd": 1}), "number into field config.Cmd of type strslice.StrSlice"),
        (
            config_doc(config={"Labels": {"a": 1}}),
            "number into field config.Labels['a'] of type string",
        ),
        (config_doc(config={"Labels": ["a"]}), "array into field config.Labels of type map"),
        (
            config_doc(config={"WorkingDir": []}),
            "array into field config.WorkingDir of type string",
        ),
    ],
)
def test_parse_config_rejects(doc: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidManifestError) as info:
        parse_config(json.dumps(doc).encode())
    assert why in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "invalid JSON in image config"),
        (b"[]", "array into field \\(image\\)"),
        (b"null", "no RootFS"),
        (b'{"rootfs": {"type": "layers", "diff_ids": []}, "x": Infinity}', "unexpected character"),
        (b" " * (MAX_CONFIG_BYTES + 1), "too large"),
    ],
)
def test_parse_config_rejects_bodies(body: bytes, why: str) -> None:
    with pytest.raises(InvalidManifestError, match=why):
        parse_config(body)
