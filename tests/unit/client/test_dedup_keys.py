"""The SDK's automatic dedup keys: never the same twice, in threads or after fork."""

from __future__ import annotations

import os
import threading

from kokaq.client.calls import auto_dedup_key


def test_keys_are_unique_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(auto_dedup_key() for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(f,)) for f in found]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [k for f in found for k in f]
    assert len(set(keys)) == len(keys) == 80_000
    assert all(k.startswith("sdk-") for k in keys)


def test_a_forked_child_draws_a_new_prefix() -> None:
    before = auto_dedup_key()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next key and leave at once
        os.write(write, auto_dedup_key().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    after = auto_dedup_key()
    assert child.rsplit("-", 1)[0] != before.rsplit("-", 1)[0]
    assert after.rsplit("-", 1)[0] == before.rsplit("-", 1)[0]  # the parent keeps counting
    assert child != after
