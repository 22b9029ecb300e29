"""What a container runs, with ECI's (and Kubernetes') rules for command and args over the
image's entrypoint and cmd."""

import pytest

from eci_imagecache.runtime.bundle import (
    BundleError,
    ContainerSettings,
    Limits,
    environment,
    process_args,
    resolve_user,
    resources,
)

IMAGE = {"config": {"Entrypoint": ["/entry"], "Cmd": ["--default"], "Env": ["A=1", "PATH=/x"]}}


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ([], [], ["/entry", "--default"]),
        ([], ["--mine"], ["/entry", "--mine"]),
        (["/bin/other"], [], ["/bin/other"]),
        (["/bin/other"], ["-v"], ["/bin/other", "-v"]),
    ],
)
def test_command_replaces_the_entrypoint_and_args_the_cmd(command, args, expected):
    settings = ContainerSettings(name="c", command=command, args=args)
    assert process_args(IMAGE, settings) == expected


def test_nothing_to_run_is_an_error():
    with pytest.raises(BundleError, match="nothing to run"):
        process_args({"config": {}}, ContainerSettings(name="c"))


def test_container_env_overrides_the_image_env():
    env = environment(IMAGE, ContainerSettings(name="c", env={"A": "2", "B": "3"}))
    assert env[:3] == ["A=2", "PATH=/x", "B=3"]


def test_users_by_number_or_by_name_from_the_image(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("app:x:1000:1001::/home/app:/bin/sh\n")
    assert resolve_user("", [tmp_path]) == (0, 0)
    assert resolve_user("42:7", [tmp_path]) == (42, 7)
    assert resolve_user("app", [tmp_path]) == (1000, 1001)
    with pytest.raises(BundleError, match="nobody"):
        resolve_user("nobody", [tmp_path])


def test_limits_only_where_the_kernel_offers_them():
    settings = ContainerSettings(name="c", cpu=0.5, memory_gib=1)
    assert resources(settings, Limits()) == {}
    assert resources(settings, Limits(cpu=True, memory=True)) == {
        "memory": {"limit": 1 << 30},
        "cpu": {"quota": 50_000, "period": 100_000},
    }
