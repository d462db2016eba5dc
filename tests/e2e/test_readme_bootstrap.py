"""The README's first minutes, run literally: the Quick start, then the bootstrap block.

The commands are read from README.md's "Quick start" section and run with bash in a copy of
this working tree (what a fresh clone of it would hold), with the real ``scripts/serve``. Only
the install is stood in for: the copy's ``.venv`` reuses this environment's packages, so pip
never runs (and never reaches the network), and is marked installed as ``scripts/serve``
marks it. The README names ports 8080 and 50051; when either is taken the test skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
HTTP_PORT, GRPC_PORT = 8080, 50051  # what the README's commands use
READY = f"http://127.0.0.1:{HTTP_PORT}/ready"


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]


def bash_blocks(section: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section, re.DOTALL)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fresh_copy(dest: Path) -> Path:
    """The files a clone would have: tracked ones plus new, not-ignored ones; then a ready .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    venv = dest / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The copy's own code first, then this environment's dependencies (a plain path line: the
    # .pth files there, such as this checkout's editable install, are not processed).
    (Path(purelib) / "switchyard-test.pth").write_text(f"{dest}\n{site.getsitepackages()[0]}\n")
    script = venv / "bin" / "switchyard"
    script.write_text(f"#!{venv}/bin/python\nfrom cli.main import main\n\nmain()\n")
    script.chmod(0o755)
    (venv / ".switchyard-installed").touch()  # what scripts/serve leaves after its pip install
    return dest


def clean_env(steps: Path) -> dict[str, str]:
    """A reader's shell: none of this machine's Switchyard or provider settings, and pip offline."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SWITCHYARD_", "AZURE_OPENAI_", "OPENAI_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", SY_STEPS=str(steps))
    return env


def stepped(block: str) -> tuple[str, list[str]]:
    """The block's commands, each followed by a record of its exit status in $SY_STEPS."""
    lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    recorded = [f'{line}\necho "{i} $?" >> "$SY_STEPS"' for i, line in enumerate(lines)]
    return "\n".join(["set -u", *recorded]), lines


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group: a background server outlives
    its shell, and whoever reaps it, it is gone once it stops running."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(shell: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Signal every process the README's commands started (they share the shell's own group)."""
    pgid = shell.pid
    if group_alive(pgid):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + timeout
    while (shell.poll() is None or group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    shell.wait(timeout=5)


def wait_ready(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(READY, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("curl") is None or not (ROOT / ".git").exists():
        pytest.skip("needs curl and a git checkout")
    taken = [p for p in (HTTP_PORT, GRPC_PORT) if not port_is_free(p)]
    if taken:
        pytest.skip(f"the README's ports {taken} are in use on this machine")
    return fresh_copy(tmp_path / "switchyard")


def test_the_readme_quick_start_and_bootstrap_work_as_written(repo: Path, tmp_path: Path) -> None:
    section = quick_start()
    blocks = bash_blocks(section)
    assert len(blocks) >= 2, "the Quick start has a start block and a bootstrap block"
    first_block = next(b for b in blocks if "./scripts/serve" in b and "SWITCHYARD_ADMIN_TOKEN" not in b)
    # Only the start: the block may also show ./scripts/test, which is the whole test suite.
    first = "\n".join(line for line in first_block.splitlines() if line.startswith("./scripts/serve"))
    bootstrap = next(b for b in blocks if "export SWITCHYARD_ADMIN_TOKEN" in b)
    logs = tmp_path / "logs"
    logs.mkdir()

    # Step 1: the first start, as a reader runs it; then, as the README says, stop it (Ctrl-C).
    with (logs / "first.out").open("wb") as out:
        first_run = subprocess.Popen(
            ["bash", "-c", first],
            cwd=repo,
            env=clean_env(tmp_path / "unused"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_ready(30), (logs / "first.out").read_text()
    finally:
        stop_group(first_run, signal.SIGINT)
    assert first_run.returncode == 0, (logs / "first.out").read_text()

    # Step 2: the bootstrap block, each command's exit status recorded.
    script, lines = stepped(bootstrap)
    # The README's REST variant of `keys create`, run in the same shell (it needs the token).
    rest = re.search(r"`(curl -X POST localhost:8080/api/keys[^`]*)`", section)
    assert rest is not None, "the README shows the REST way to create a key"
    script += f'\n{rest.group(1)} -sf -o "$SY_REST_OUT"\necho "rest $?" >> "$SY_STEPS"'
    steps = tmp_path / "steps"
    env = {**clean_env(steps), "SY_REST_OUT": str(tmp_path / "rest.json")}
    with (logs / "out").open("wb") as out, (logs / "err").open("wb") as err:
        shell = subprocess.Popen(
            ["bash", "-c", script],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        try:
            shell.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the bootstrap block did not finish:\n" + (logs / "err").read_text())
        report = textwrap.indent((logs / "err").read_text(), "  ")
        statuses = dict(line.split(" ", 1) for line in steps.read_text().splitlines())
        for i, line in enumerate(lines):
            assert statuses.get(str(i)) == "0", f"step failed: {line}\n{report}"
        assert statuses.get("rest") == "0", f"the REST key creation failed\n{report}"
        created = orjson.loads((logs / "out").read_text())
        assert created["secret"].startswith("sk-bf-"), created
        assert created["key"]["name"] == "my-app"
        assert created["key"]["rate_limit"] == {"requests_per_minute": 600}
        assert orjson.loads((tmp_path / "rest.json").read_text())["secret"].startswith("sk-bf-")
    finally:
        stop_group(shell)
    assert port_is_free(HTTP_PORT) and port_is_free(GRPC_PORT)
    # A server from step 1 left running answers the bootstrap's admin calls with a bare 401.
    assert "Ctrl-C" in section, "the README says to stop the first server before the bootstrap"


def test_the_readme_lists_every_variable_the_built_in_config_reads() -> None:
    lines = (ROOT / "switchyard" / "default.yaml").read_text().splitlines()
    values = "\n".join(line.split(" #", 1)[0] for line in lines if not line.lstrip().startswith("#"))
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", values))
    readme = (ROOT / "README.md").read_text()
    reference = readme.split("\n## Configuration reference\n", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for name in names if f"`{name}`" not in reference)
    assert not missing, f"not in the README's Configuration reference: {missing}"
    assert {"SWITCHYARD_JWT_SECRET", "OPENAI_BASE_URL"} <= names
