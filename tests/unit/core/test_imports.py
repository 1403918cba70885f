"""kokaq.core is pure: importing it loads no I/O, clock, randomness or other kokaq package."""

from __future__ import annotations

import json
import subprocess
import sys

import kokaq.core

FORBIDDEN = [
    "grpc",
    "google.protobuf",
    "pysyncobj",
    "prometheus_client",
    "asyncio",
    "socket",
    "threading",
    "time",
    "random",
    "uuid",
]


PROBE = """
import importlib.abc, json, sys

FORBIDDEN = json.loads(sys.argv[1])


def forbidden(name):
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN) or (
        name.startswith("kokaq.") and not name.startswith("kokaq.core")
    )


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if forbidden(name):
            raise ImportError(f"kokaq.core imported {name}")
        return None


# The interpreter itself loads some of these (zipimport loads time), so forget
# them and block any new import: kokaq.core must not ask for them at all.
for name in [n for n in sys.modules if forbidden(n)]:
    del sys.modules[name]
sys.meta_path.insert(0, Blocker())
import kokaq.core
import kokaq.core.engine

print(json.dumps(sorted(n for n in sys.modules if forbidden(n) or n.startswith("kokaq"))))
"""


def test_importing_core_loads_nothing_forbidden() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(FORBIDDEN)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert "kokaq.core.engine" in loaded
    assert [name for name in loaded if not name.startswith("kokaq.core")] in ([], ["kokaq"])


def test_the_probe_catches_a_forbidden_import() -> None:
    probe = PROBE.replace("import kokaq.core\n", "import kokaq.core\nimport uuid\n", 1)
    run = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(FORBIDDEN)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode != 0
    assert "imported uuid" in run.stderr


def test_public_names_match_all() -> None:
    exported = {name for name in dir(kokaq.core) if not name.startswith("_")}
    modules = {"admission", "backoff", "config", "engine", "errors", "indexes", "message"}
    modules |= {"namespace", "queue", "results", "scheduler", "snapshot", "validation"}
    modules |= {"browse", "dead_letters", "engine_core", "fair", "filters", "mixes"}
    modules |= {"scheduling_ops", "schedules"}
    modules |= {"weighted"}
    modules |= {"annotations"}  # from __future__
    assert set(kokaq.core.__all__) == exported - modules
