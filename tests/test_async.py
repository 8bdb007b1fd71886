"""The async twins, for async views: same behaviour, awaited."""

from __future__ import annotations

import asyncio

import pytest
from django.core.files.base import ContentFile

from .helpers import random_bytes


def test_async_twins_save_check_list_size_read_and_delete(storage):
    data = random_bytes(2 * storage.config.chunk_size + 5000)

    async def scenario():
        name = await storage.asave("async/one.bin", ContentFile(data))
        assert name == "async/one.bin"
        assert await storage.aexists(name)
        assert await storage.asize(name) == len(data)
        assert await storage.alistdir("async") == ([], ["one.bin"])
        info = await storage.aupdate_meta(name, description="async")
        assert info.description == (await storage.ainfo(name)).description == "async"
        async with await storage.aopen(name) as f:
            chunks = [chunk async for chunk in f]
        assert b"".join(chunks) == data and len(chunks) == 3
        async with await storage.aopen(name) as f:
            assert await f.read(10) == data[:10]
            assert await f.read(200_000) == data[10:200_010]
            assert await f.read() == data[200_010:]
            assert await f.read() == b""
        await storage.adelete(name)
        assert not await storage.aexists(name)

    asyncio.run(scenario())


def test_async_calls_run_concurrently_on_one_loop(storage):
    async def scenario():
        names = await asyncio.gather(*(storage.asave(f"c{i}.txt", ContentFile(b"x")) for i in range(20)))
        found = await asyncio.gather(*(storage.aexists(name) for name in names))
        return found

    assert all(asyncio.run(scenario()))


def test_aopen_of_a_missing_name_raises_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        asyncio.run(storage.aopen("missing"))
