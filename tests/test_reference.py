"""Docker reference grammar: parsing, normalisation, familiar names, round trips."""

from __future__ import annotations

import random

import pytest

from dockerdrag.digest import Digest
from dockerdrag.errors import InvalidReferenceError, UsageError
from dockerdrag.reference import (
    DOCKER_HUB_DOMAIN,
    DOCKER_HUB_REGISTRY,
    Reference,
)

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "0123456789abcdef" * 4


# text -> (domain, path, tag, digest)
VALID = [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("library/busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/foo/bar:x", "docker.io", "foo/bar", "x", None),
    ("mysql/mysql-server", "docker.io", "mysql/mysql-server", "latest", None),
    ("foo/bar/baz", "docker.io", "foo/bar/baz", "latest", None),
    ("localhost/foo", "localhost", "foo", "latest", None),
    ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None),
    ("127.0.0.1:5101/fid/multi:latest", "127.0.0.1:5101", "fid/multi", "latest", None),
    ("ghcr.io/owner/repo", "ghcr.io", "owner/repo", "latest", None),
    ("quay.io/a/b/c/d:v1.2.3-rc.1_x", "quay.io", "a/b/c/d", "v1.2.3-rc.1_x", None),
    ("registry:5000/x", "registry:5000", "x", "latest", None),
    ("my-registry.example.com:443/x/y", "my-registry.example.com:443", "x/y", "latest", None),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
    ("[fe80::1]/x", "[fe80::1]", "x", "latest", None),
    ("Foo/bar", "Foo", "bar", "latest", None),  # uppercase first component = domain
    ("EXAMPLE.com/bar", "EXAMPLE.com", "bar", "latest", None),
    ("a.b-c/e", "a.b-c", "e", "latest", None),  # has '.', so a domain
    ("a_b/c---d", "docker.io", "a_b/c---d", "latest", None),
    ("x/a__b", "docker.io", "x/a__b", "latest", None),
    ("localhost", "docker.io", "library/localhost", "latest", None),  # no '/': a Hub name
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # ... with a tag
    ("docker.io", "docker.io", "library/docker.io", "latest", None),
    ("busybox@" + D1, "docker.io", "library/busybox", None, D1),
    ("busybox:1.36@" + D1, "docker.io", "library/busybox", "1.36", D1),
    ("localhost:5000/a@" + D2, "localhost:5000", "a", None, D2),
    ("x:" + "t" * 128, "docker.io", "library/x", "t" * 128, None),
    ("x:_", "docker.io", "library/x", "_", None),
    ("x:A.b-C", "docker.io", "library/x", "A.b-C", None),
    ("0/1", "docker.io", "0/1", "latest", None),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), VALID)
def test_parse_valid(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert ref.domain == domain
    assert ref.path == path
    assert ref.tag == tag
    assert ref.digest == (Digest.parse(digest) if digest else None)
    # Parsing and printing are symmetric.
    assert Reference.parse(str(ref)) == ref
    assert str(Reference.parse(str(ref))) == str(ref)


INVALID = [
    ("", "empty"),
    ("Busybox", "must be lowercase"),
    ("busyBox:1", "must be lowercase"),
    ("docker.io/Library/busybox", "must be lowercase"),
    ("localhost:5000/A/b", "must be lowercase"),
    ("ghcr.io/Owner/repo", "must be lowercase"),
    ("a//b", "empty path component"),
    ("a/", "empty path component"),
    ("/a", "empty path component"),
    ("localhost:5000/", "repository name is empty"),
    ("localhost:5000//a", "empty path component"),
    ("a/../b", "'..'"),
    ("../a", "invalid registry domain"),  # '.' makes '..' a (bad) domain
    ("a/./b", "'.'"),
    ("a/.b", "'.b'"),
    ("a/b.", "'b.'"),
    ("a/-b", "'-b'"),
    ("a/b_", "'b_'"),
    ("a/b___c", "'b___c'"),
    ("a/b..c", "'b..c'"),
    ("busybox:", "':' without a tag"),
    ("localhost:5000/a:", "':' without a tag"),
    (":tag", "repository name is empty"),
    ("busybox:-x", "invalid tag"),
    ("busybox:.x", "invalid tag"),
    ("busybox:a/b", "invalid registry domain"),  # ':' before '/' -> 'busybox:a' is a domain
    ("busybox:a+b", "invalid tag"),
    ("busybox:" + "t" * 129, "longer than 128"),
    ("busybox@", "'@' without a digest"),
    ("busybox@sha256:", "invalid digest"),
    ("busybox@sha256:abc", "invalid digest"),
    ("busybox@sha256:" + "A" * 64, "invalid digest"),
    ("busybox@sha256:" + "g" * 64, "invalid digest"),
    ("busybox@sha256:" + "a" * 63, "invalid digest"),
    ("busybox@sha256:" + "a" * 65, "invalid digest"),
    ("busybox@sha256:../..", "invalid digest"),
    ("busybox@sha256:../../../etc/passwd", "invalid digest"),
    ("busybox@md5:d41d8cd98f00b204e9800998ecf8427e", "only sha256 is supported"),
    ("busybox@sha512:" + "a" * 128, "only sha256 is supported"),
    ("busybox@" + D1 + "@" + D1, "invalid digest"),
    ("a" * 64, "image ID"),
    ("busy box", "whitespace"),
    ("busybox\n", "whitespace"),
    ("busybox\t:1", "whitespace"),
    ("busybox\x00", "control"),
    ("büsybox", "non-ASCII"),
    ("a:b:c", "invalid repository name component"),
    ("-host.com/a", "invalid registry domain"),
    ("host-.com/a", "invalid registry domain"),
    ("ho_st.com/a", "invalid registry domain"),
    ("host.com:/a", "invalid registry domain"),
    ("host.com:abc/a", "invalid registry domain"),
    ("host.com:0/a", "invalid registry port"),
    ("host.com:65536/a", "invalid registry port"),
    ("[zz::1]:5000/a", "invalid registry domain"),
    ("a/" + "b" * 250, "longer than 255"),  # docker.io/a/bbbb... is 262
]


@pytest.mark.parametrize(("text", "why"), INVALID)
def test_parse_invalid(text: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    assert why in str(info.value)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 2


def test_error_quotes_the_input() -> None:
    with pytest.raises(InvalidReferenceError, match=r"invalid reference 'Busybox:1'"):
        Reference.parse("Busybox:1")


def test_name_length_limit_is_on_the_qualified_name() -> None:
    # 255 characters exactly is fine, 256 is not.
    path = "a/" + "b" * (255 - len("localhost:5000/a/"))
    ok = Reference.parse(f"localhost:5000/{path}")
    assert len(ok.name) == 255
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        Reference.parse(f"localhost:5000/{path}b")
    hub = "x/" + "y" * (255 - len("docker.io/x/"))
    assert len(Reference.parse(hub).name) == 255
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        Reference.parse(hub + "y")


def test_not_a_string() -> None:
    with pytest.raises(InvalidReferenceError):
        Reference.parse(None)  # type: ignore[arg-type]


# --- Hub normalisation and properties ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "registry_host", "is_hub"),
    [
        ("busybox", "docker.io/library/busybox", DOCKER_HUB_REGISTRY, True),
        ("index.docker.io/library/busybox", "docker.io/library/busybox", DOCKER_HUB_REGISTRY, True),
        ("foo/bar", "docker.io/foo/bar", DOCKER_HUB_REGISTRY, True),
        ("localhost:5000/a/b", "localhost:5000/a/b", "localhost:5000", False),
        ("ghcr.io/o/r", "ghcr.io/o/r", "ghcr.io", False),
        (
            "registry-1.docker.io/library/x",
            "registry-1.docker.io/library/x",
            "registry-1.docker.io",
            False,
        ),
    ],
)
def test_names_and_hosts(text: str, name: str, registry_host: str, is_hub: bool) -> None:
    ref = Reference.parse(text)
    assert ref.name == name
    assert ref.registry_host == registry_host
    assert ref.is_docker_hub is is_hub


@pytest.mark.parametrize(
    ("text", "familiar", "tagged"),
    [
        ("docker.io/library/busybox:1.36", "busybox", "busybox:1.36"),
        ("busybox", "busybox", "busybox:latest"),
        ("docker.io/foo/bar:1", "foo/bar", "foo/bar:1"),
        ("library/a/b:2", "library/a/b", "library/a/b:2"),  # library/ only for one level
        ("localhost:5000/a/b:t", "localhost:5000/a/b", "localhost:5000/a/b:t"),
        ("localhost:5000/library/x:t", "localhost:5000/library/x", "localhost:5000/library/x:t"),
        ("127.0.0.1:5101/fid/multi", "127.0.0.1:5101/fid/multi", "127.0.0.1:5101/fid/multi:latest"),
        ("fidmulti:1", "fidmulti", "fidmulti:1"),
        ("example.com/other/multi:zz", "example.com/other/multi", "example.com/other/multi:zz"),
        ("busybox@" + D1, "busybox", None),
        ("busybox:1.36@" + D1, "busybox", "busybox:1.36"),
    ],
)
def test_familiar_names(text: str, familiar: str, tagged: str | None) -> None:
    ref = Reference.parse(text)
    assert ref.familiar_name == familiar
    assert ref.familiar_tagged() == tagged


@pytest.mark.parametrize(
    ("text", "fetch_ref"),
    [
        ("busybox", "latest"),
        ("busybox:1.36", "1.36"),
        ("busybox@" + D1, D1),
        ("busybox:1.36@" + D1, D1),  # the digest wins
    ],
)
def test_fetch_ref(text: str, fetch_ref: str) -> None:
    assert Reference.parse(text).fetch_ref == fetch_ref


@pytest.mark.parametrize(
    ("text", "output"),
    [
        ("hello-world", "library_hello-world.tar"),
        ("library/hello-world:latest", "library_hello-world.tar"),
        ("mysql/mysql-server:8.0", "mysql_mysql-server.tar"),
        ("localhost:5000/a/b/c:t", "a_b_c.tar"),
        ("ghcr.io/o/r@" + D1, "o_r.tar"),
        ("localhost:5000/nul", "nul_.tar"),  # NUL.tar is a device on Windows
        ("localhost:5000/com1:v1", "com1_.tar"),
        ("localhost:5000/console", "console.tar"),
    ],
)
def test_default_output_name(text: str, output: str) -> None:
    assert Reference.parse(text).default_output_name() == output


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox@" + D1, "docker.io/library/busybox@" + D1),
        ("busybox:1@" + D1, "docker.io/library/busybox:1@" + D1),
        ("localhost:5000/a", "localhost:5000/a:latest"),
        ("index.docker.io/x/y:z", "docker.io/x/y:z"),
    ],
)
def test_str_is_canonical(text: str, canonical: str) -> None:
    assert str(Reference.parse(text)) == canonical


# --- construction, with_tag / with_digest --------------------------------------------


def test_constructor_validates_and_normalises() -> None:
    ref = Reference("index.docker.io", "busybox")
    assert ref == Reference.parse("busybox")
    assert ref.tag == "latest"
    assert Reference("docker.io", "a/b", None, Digest.parse(D1)).tag is None
    for bad in [
        ("docker.io", "Busybox", "x", None),
        ("docker.io", "a/../b", "x", None),
        ("bad_host", "a/b", "x", None),
        ("docker.io", "a", "-bad", None),
    ]:
        with pytest.raises(InvalidReferenceError):
            Reference(*bad)
    with pytest.raises(InvalidReferenceError, match="digest must be a Digest"):
        Reference("docker.io", "a", None, D1)  # type: ignore[arg-type]


def test_with_tag_and_digest() -> None:
    ref = Reference.parse("busybox:1.36")
    pinned = ref.with_digest(Digest.parse(D1))
    assert pinned.tag == "1.36"
    assert pinned.digest == Digest.parse(D1)
    assert pinned.fetch_ref == D1
    assert pinned.familiar_tagged() == "busybox:1.36"
    assert ref.with_digest(D1) == pinned
    assert pinned.with_digest(None) == ref
    assert ref.with_tag("2") == Reference.parse("busybox:2")
    assert pinned.with_tag(None).familiar_tagged() is None
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        ref.with_tag("..")
    with pytest.raises(InvalidReferenceError, match="only sha256"):
        ref.with_digest("md5:abc")
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        ref.with_digest("sha256:../..")
    # Dropping both leaves the default tag.
    assert Reference.parse("busybox@" + D1).with_digest(None).tag == "latest"


def test_references_are_hashable_values() -> None:
    refs = {Reference.parse("busybox"), Reference.parse("docker.io/library/busybox:latest")}
    assert len(refs) == 1
    assert Reference.parse("busybox").domain == DOCKER_HUB_DOMAIN


def test_round_trip_generated() -> None:
    """Pseudo-random valid references survive str -> parse -> str."""
    rng = random.Random(20240229)
    alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
    seps = [".", "_", "__", "-", "---"]
    tag_chars = "abcXYZ019_.-"

    def component() -> str:
        parts = ["".join(rng.choices(alnum, k=rng.randint(1, 6)))]
        for _ in range(rng.randint(0, 2)):
            parts.append(rng.choice(seps))
            parts.append("".join(rng.choices(alnum, k=rng.randint(1, 4))))
        return "".join(parts)

    domains = [
        "",
        "docker.io/",
        "index.docker.io/",
        "localhost/",
        "localhost:5000/",
        "ghcr.io/",
        "a.b.c:1/",
        "[::1]:443/",
    ]
    for _ in range(500):
        domain = rng.choice(domains)
        components = [component() for _ in range(rng.randint(1, 4))]
        if not domain:  # a first component with '.' would be taken as a domain
            components[0] = components[0].replace(".", "-")
        text = domain + "/".join(components)
        if rng.random() < 0.6:
            text += (
                ":" + rng.choice("abc_019") + "".join(rng.choices(tag_chars, k=rng.randint(0, 10)))
            )
        if rng.random() < 0.3:
            text += "@sha256:" + "".join(rng.choices("0123456789abcdef", k=64))
        ref = Reference.parse(text)
        assert Reference.parse(str(ref)) == ref
        assert str(Reference.parse(str(ref))) == str(ref)
        first = ref.familiar_name.split("/", 1)[0]
        if not ref.is_docker_hub or not ("." in first or ":" in first or first == "localhost"):
            assert Reference.parse(ref.familiar_name).name == ref.name


def test_familiar_name_keeps_dockers_ambiguity() -> None:
    # Like Docker's FamiliarName: a Hub namespace that looks like a domain is not
    # protected. (Hub namespaces cannot contain '.', so this never happens there.)
    ref = Reference("docker.io", "foo.bar/baz")
    assert ref.familiar_name == "foo.bar/baz"
    assert Reference.parse(ref.familiar_name).domain == "foo.bar"
