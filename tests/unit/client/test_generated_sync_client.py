"""The blocking SDK is generated from the asyncio one; it must not drift."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

from kokaq.client import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[3]


def test_committed_sync_client_is_current(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts/gen-sync-client"), str(tmp_path)], check=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["__init__.py", "client.py"]
    _, mismatch, missing = filecmp.cmpfiles(tmp_path, ROOT / "client/_sync", names, shallow=False)
    assert (mismatch, missing) == ([], []), "run scripts/gen-sync-client and commit the result"


def test_both_clients_offer_the_same_methods() -> None:
    public = {n for n in dir(AsyncClient) if not n.startswith("_")}
    assert public == {n for n in dir(Client) if not n.startswith("_")}
