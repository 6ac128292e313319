"""What users install: the wheel, in a fresh virtualenv, run from outside the checkout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ws_counter.tools.processes import Child, free_port

from .checkout import copy_of_checkout, only_our_names, run_checked
from .conftest import http_get, seconds
from .deploy import ROOT

pytestmark = pytest.mark.install


def run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH: nothing may reach into a checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return run_checked(argv, cwd, timeout, env)


def outside_env(venv_dir: Path) -> dict[str, str]:
    """This environment without the checkout: no PYTHONPATH, the new virtualenv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv_dir / 'bin'}:{env.get('PATH', '')}"
    return env


def install_others_named_tools_and_worker(venv_dir: Path) -> None:
    """Someone else's packages called tools and worker: the wheel must neither replace
    nor import them."""
    (site_packages,) = venv_dir.glob("lib/python*/site-packages")
    for other in ("tools", "worker"):
        (site_packages / other).mkdir()
        (site_packages / other / "__init__.py").write_text(f"OWNER = 'not ws-counter: {other}'\n")


def test_the_wheel_runs_the_cluster_and_a_load_test_outside_the_checkout(tmp_path: Path) -> None:
    """A wheel in a fresh virtualenv finds HAProxy's config, the Lua, the page, the client
    module and the OpenAPI description in itself, and its client library works, beside
    other projects' packages called tools and worker."""
    dist, home, venv_dir = tmp_path / "dist", tmp_path / "elsewhere", tmp_path / "venv"
    home.mkdir()
    source = copy_of_checkout(tmp_path / "source")
    left_before = sorted(path.name for path in ROOT.iterdir())
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)], source, 300)
    # The build happened in the copy: the checkout gained nothing (no build/lib).
    assert sorted(path.name for path in ROOT.iterdir()) == left_before
    wheel = only_our_names(dist)
    venv.create(venv_dir, with_pip=True)
    python = venv_dir / "bin" / "python"
    install_others_named_tools_and_worker(venv_dir)
    # As the image installs it: the lock's exact versions and hashes, then the wheel,
    # whose own requirements pip check then finds met by the lock.
    lock = ROOT / "requirements" / "run.txt"
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    run([*pip, "--require-hashes", "--no-deps", "-r", str(lock)], home, 300)
    run([*pip, "--no-deps", str(wheel)], home, 300)
    run([str(python), "-m", "pip", "check"], home, 60)
    # What running needs, and no more: the demo's virtualenv is this plus pip's own.
    size = sum(path.stat().st_size for path in venv_dir.rglob("*") if path.is_file())
    assert size < 150 * 2**20, f"the installed virtualenv takes {size / 2**20:.0f} MiB"
    where = run(
        [
            str(python),
            "-c",
            "import ws_counter.worker as w, ws_counter.tools as t, ws_counter_client as c;"
            " print(w.__file__, t.__file__, c.__file__)",
        ],
        home,
        30,
    ).stdout
    assert str(ROOT) not in where and all(str(venv_dir) in path for path in where.split())
    others = run(
        [str(python), "-c", "import tools, worker; print(tools.OWNER, worker.OWNER)"], home, 30
    )
    assert others.stdout.split() == ["not", "ws-counter:", "tools", "not", "ws-counter:", "worker"]

    port = free_port()
    cluster = Child(
        "installed-cluster",
        [str(venv_dir / "bin" / "ws-counter"), "cluster", "--workers", "2", "--port", str(port)],
        env={**outside_env(venv_dir), "COLUMNS": "200"},
    )
    cluster.start()
    try:
        cluster.wait_for_line(lambda line: "Ctrl-C stops everything" in line, seconds(60))
        output = "\n".join(cluster.output())
        assert "HAProxy (leastconn" in output, output
        assert "not installed" not in output, output
        status, page = http_get(f"http://127.0.0.1:{port}/counters/installed")
        assert status == 200 and "ws-counter · installed" in page
        status, module = http_get(f"http://127.0.0.1:{port}/client.js")
        assert status == 200 and "export function connect" in module
        status, description = http_get(f"http://127.0.0.1:{port}/openapi.json")
        assert status == 200 and json.loads(description)["openapi"].startswith("3.")
        library = run(
            [
                str(python),
                "-c",
                "import asyncio, ws_counter_client as c\n"
                "async def main():\n"
                f"    async with c.connect('ws://127.0.0.1:{port}', counter='installed') as k:\n"
                "        print((await k.increment(7)).total)\n"
                "asyncio.run(main())",
            ],
            home,
            60,
        ).stdout
        assert library.strip() == "7"
        report_path = home / "report.json"
        load = subprocess.run(
            [
                str(venv_dir / "bin" / "ws-counter"),
                "loadtest",
                f"ws://127.0.0.1:{port}/",
                *("--clients", "40", "--increments", "5", "--counter", "installed"),
                *("--loopback-only", "--json", str(report_path)),
            ],
            cwd=home,
            env=outside_env(venv_dir),
            capture_output=True,
            text=True,
            timeout=seconds(180),
            check=False,
        )
        assert load.returncode == 0, load.stdout + load.stderr
        report = json.loads(report_path.read_text())
        assert report["correct"] is True
        assert report["increments_acked"] == 200
        assert report["observed_total"] == report["expected_total"]
    finally:
        cluster.send_signal(signal.SIGINT)
        assert cluster.wait(seconds(60)) == 0, "\n".join(cluster.output())


def test_the_readmes_first_command_installs_only_what_running_needs(tmp_path: Path) -> None:
    """`bash scripts/dev.sh demo` makes its virtualenv with the project and its runtime
    dependencies, not the test toolchain (browser driver, linters, kubectl): under 150 MiB."""
    venv_dir = tmp_path / "demo-venv"
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "dev.sh"), "demo", "--help"],
        env={**os.environ, "VENV": str(venv_dir)},
        capture_output=True,
        text=True,
        timeout=seconds(600),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage: ws-counter demo" in result.stdout
    size = sum(path.stat().st_size for path in venv_dir.rglob("*") if path.is_file())
    assert size < 150 * 2**20, f"the demo's virtualenv takes {size / 2**20:.0f} MiB"
    assert not (venv_dir / "bin" / "playwright").exists()
