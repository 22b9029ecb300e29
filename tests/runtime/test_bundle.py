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
from eci_imagecache.runtime.cgroups import GroupLimits

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
    assert resources(settings, Limits()).keys() == {"devices"}
    found = resources(settings, Limits(cpu=True, memory=True))
    assert (found["memory"], found["cpu"]) == (
        {"limit": 1 << 30},
        {"quota": 50_000, "period": 100_000},
    )


def test_a_container_gets_no_more_cpu_than_its_group():
    # cgroup v1 refuses a child's quota above its parent's: crun would fail the container.
    settings = ContainerSettings(name="c", cpu=4)
    found = resources(settings, Limits(cpu=True), GroupLimits(cpu=0.5))
    assert found["cpu"] == {"quota": 50_000, "period": 100_000}


def test_the_program_must_be_in_the_image_through_links_and_whiteouts(tmp_path):
    import os

    from eci_imagecache.runtime.bundle import check_executable

    base, top = tmp_path / "base", tmp_path / "top"
    (base / "usr/bin").mkdir(parents=True)
    (base / "usr/bin/tool").write_text("#!/bin/sh\n")
    (base / "usr/bin/gone").write_text("#!/bin/sh\n")
    os.symlink("usr/bin", base / "bin")  # a merged /usr, as Debian images have
    (top / "usr/bin").mkdir(parents=True)
    os.mknod(top / "usr/bin/gone", 0o020000, os.makedev(0, 0))  # whited out by the top layer
    layers = [top, base]
    check_executable("/bin/tool", [], layers)
    check_executable("tool", ["PATH=/bin"], layers)
    for missing_program in ("/bin/gone", "/usr/bin/none", "none"):
        with pytest.raises(BundleError, match="is not in the image"):
            check_executable(missing_program, ["PATH=/bin:/usr/bin"], layers)
