import pytest
from hypothesis import given
from hypothesis import strategies as st

from eci_imagecache.engine.refs import ImageRef, ImageRefError, normalize, parse_image_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("library/nginx", "docker.io/library/nginx:latest"),
        ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
        ("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("localhost/app:v1", "localhost/app:v1"),
        (
            "registry.cn-hangzhou.aliyuncs.com/ns/app:v2",
            "registry.cn-hangzhou.aliyuncs.com/ns/app:v2",
        ),
        ("127.0.0.1:5000/a/b/c:dev", "127.0.0.1:5000/a/b/c:dev"),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),
        (
            f"nginx:1.25@{DIGEST.upper().replace('SHA256', 'sha256')}",
            f"docker.io/library/nginx:1.25@{DIGEST}",
        ),
        ("Registry.Example.COM:443/team/app:v1", "registry.example.com:443/team/app:v1"),
        ("  nginx  ", "docker.io/library/nginx:latest"),
        ("my-registry.io/a__b/c.d-e:x_Y.1", "my-registry.io/a__b/c.d-e:x_Y.1"),
    ],
)
def test_normalizes(text: str, canonical: str) -> None:
    assert normalize(text) == canonical


def test_parts() -> None:
    ref = parse_image_ref(f"localhost:5000/team/app:v1@{DIGEST}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "localhost:5000",
        "team/app",
        "v1",
        DIGEST,
    )
    assert ref.repository_key == "localhost:5000/team/app"
    assert ref.version == DIGEST


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("nginx:", "tag ''"),
        ("nginx:bad/tag", "tag"),
        ("NGINX", "lowercase"),
        ("team/App:v1", "lowercase"),
        ("nginx@sha256:1234", "digest"),
        ("nginx@sha256:" + "a" * 63, "64 hex digits"),
        ("a//b", "empty path component"),
        ("registry.io/", "no repository"),
        ("ngi nx", "white space"),
        ("-bad.host/app", "registry host"),
        ("nginx:" + "a" * 129, "tag"),
        ("x.io/" + "a" * 260, "longer than 255"),
        ("a/-b", "path component"),
    ],
)
def test_rejects_malformed(text: str, problem: str) -> None:
    with pytest.raises(ImageRefError) as info:
        parse_image_ref(text)
    assert problem in str(info.value)
    assert "invalid image reference" in str(info.value)


component = st.from_regex(r"[a-z0-9]{1,8}([_-][a-z0-9]{1,8}){0,2}", fullmatch=True)
host = st.one_of(
    st.none(),
    st.just("localhost:5000"),
    st.from_regex(r"[a-z][a-z0-9]{0,8}\.[a-z]{2,5}(:[1-9][0-9]{0,3})?", fullmatch=True),
)
tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
digest = st.one_of(st.none(), st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True))


@given(host, st.lists(component, min_size=1, max_size=3), tag, digest)
def test_round_trip(h: str | None, path: list[str], t: str | None, d: str | None) -> None:
    text = "/".join(([h] if h else []) + path)
    if t:
        text += f":{t}"
    if d:
        text += f"@{d}"
    ref = parse_image_ref(text)
    # The canonical form parses to the same reference, and normalizing is idempotent.
    assert parse_image_ref(str(ref)) == ref
    assert normalize(str(ref)) == str(ref)
    assert ref.tag == (t or (None if d else "latest"))
    assert ref.digest == d


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_clearly(text: str) -> None:
    try:
        ref = parse_image_ref(text)
    except ImageRefError as err:
        assert str(err).startswith("invalid image reference")
    else:
        assert isinstance(ref, ImageRef)
        assert parse_image_ref(str(ref)) == ref
