"""The provider process ends with the CLI (see dynamic/lifetime.py); the end to end test kills
`pulumi` mid-build and sees the provider end once its build is done. Here: what it counts."""

import threading

from eci_imagecache.dynamic import lifetime
from eci_imagecache.dynamic.container_group_provider import ContainerGroupProvider
from eci_imagecache.dynamic.image_cache_provider import ImageCacheProvider


def test_a_running_hook_is_counted_until_it_returns() -> None:
    started, release = threading.Event(), threading.Event()

    @lifetime.counted_hooks
    class Provider:
        def create(self, props: dict) -> str:
            started.set()
            release.wait(10)
            return "made"

    before = lifetime.running_hooks()
    worker = threading.Thread(target=Provider().create, args=({},))
    worker.start()
    assert started.wait(10)
    assert lifetime.running_hooks() == before + 1
    release.set()
    worker.join(10)
    assert lifetime.running_hooks() == before


def test_both_providers_count_every_hook_they_define() -> None:
    for provider in (ImageCacheProvider, ContainerGroupProvider):
        for name in lifetime.HOOKS:
            if name in vars(provider):
                assert vars(provider)[name].__wrapped__, (provider, name)


def test_only_the_provider_process_watches() -> None:
    threads = {t.name for t in threading.enumerate()}
    lifetime.watch_cli()  # pytest is not `python -m pulumi.dynamic`
    assert "cli-watch" not in {t.name for t in threading.enumerate()} - threads
    assert lifetime.find_cli() is None  # no `pulumi` among this process's ancestors
