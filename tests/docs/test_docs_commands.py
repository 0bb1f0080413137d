"""Every command in README.md, docs/*.md and docs/tutorial/*.md runs as written, in order.

(Issue 13, item 2; the tutorial pages since issue 18.)

Each Markdown file is played in a fresh directory where ``.venv`` is the virtual
environment running the tests, as a reader would play it after the install command:

- ``sh`` blocks run line by line (``\\`` continues a line) with bash.  A line that starts
  a server (``twistd -n``, ``python -m twisted``, ``haproxy -db``, libcoap's
  ``coap-server-openssl`` with its TCP listener on ``-p``) runs in the background until
  its ports accept; a block that starts servers first stops those of earlier blocks (the
  reader's Ctrl-C); every server is stopped at the end of the file.  A line whose
  comment says it runs "until Ctrl-C" gets SIGINT after a while and must have printed
  something and exit 0 (what Ctrl-C does to an observation, docs/client.md).  Every other
  line must exit 0 within its time limit.
- ``python`` blocks run as programs with the venv's Python (exit 0); ``>>>`` blocks are
  doctests.
- A block after ``<!-- file: NAME -->`` is written to NAME instead of run; the README's
  such files are there for every page (the pages build on it).
- A block after ``<!-- not-run: REASON -->`` is not run: it is counted and its reason
  reported (``-rA`` shows them), never skipped silently.
- README's install commands (``<!-- server-command -->``, ``<!-- test-command -->``) are
  what ``.ci/run`` itself runs: the server command's ``twistd`` is started; the test
  command is not re-run from inside the tests it starts.  The README's
  ``<!-- docs-command -->`` (the Sphinx build) is run by ``test_sphinx_build.py``.
"""

from __future__ import annotations

import doctest
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import childproc
import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("tutorial/*.md"))]
COMMAND_TIMEOUT = 60.0  # seconds for one command: generous, it only bounds a hang
SERVER_START = 30.0
CTRL_C_AFTER = 2.0
SETTLE = 2.0  # seconds a server runs, at least, before the Ctrl-C that stops it

# The info string's first word is the language; MyST directive fences (```{include} ...)
# are fences too, so that their closing ``` is not read as an opening.
_FENCE = re.compile(r"^```\s*(\S*).*$")
_MARKER = re.compile(r"^<!--\s*([\w-]+)(?::\s*(.*?))?\s*-->\s*$")


@dataclass
class Block:
    page: str
    line: int
    language: str
    text: str
    marker: str | None
    argument: str | None


def page_id(page: Path) -> str:
    """``README.md``, ``tls.md`` (docs/tls.md), ``tutorial/tls.md``: unique, short."""
    return str(page.relative_to(DOCS)) if page.is_relative_to(DOCS) else page.name


def blocks(page: Path) -> Iterator[Block]:
    """The fenced blocks of a page, each with the HTML comment right before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    marker = argument = None
    index = 0
    while index < len(lines):
        line = lines[index]
        found = _MARKER.match(line)
        if found:
            marker, argument = found.group(1), found.group(2)
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            start = index
            body = []
            index += 1
            while index < len(lines) and not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            text = "\n".join(body) + "\n"
            yield Block(page_id(page), start + 1, fence.group(1), text, marker, argument)
            marker = argument = None
        elif line.strip():
            marker = argument = None
        index += 1


def logical_lines(script: str) -> list[str]:
    out: list[str] = []
    pending = ""
    for raw in script.splitlines():
        if raw.rstrip().endswith("\\") and not raw.rstrip().endswith("\\\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


def is_server(line: str) -> bool:
    return bool(re.search(
        r"(^|/)twistd -n|(^|/)python -m twisted |^haproxy -db|^coap-server-openssl ", line))


def server_ports(line: str) -> list[int]:
    if line.startswith("haproxy"):
        return [5683]
    if line.startswith("coap-server-openssl"):  # libcoap: UDP and TCP on -p (5683)
        found = re.search(r"\s-p\s+(\d+)", line)
        return [int(found.group(1)) if found else 5683]
    ports = [int(p) for p in re.findall(r"(?:tcp|ssl|tcp6):(\d+)", line)]
    if ports:
        return ports[:1]
    if "--certificate" in line or "--psk-file" in line:
        return [5684]
    return [5683]


def accepts(port: int) -> bool:
    for host in ("127.0.0.1", "::1"):
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            continue
    return False


class Player:
    """Plays the blocks of one page in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        # The pages run against the install, as a reader's do (CI installs the clone).
        self.env.pop("PYTHONPATH", None)
        self.servers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.started_at = 0.0
        self.log: list[str] = []

    def stop_servers(self) -> None:
        if self.servers:
            # A reader presses Ctrl-C on a server that is up: a twistd accepts (its
            # listeners are bound) a moment before its reactor runs and handles SIGINT.
            settle = self.started_at + SETTLE - time.monotonic()
            if settle > 0:
                time.sleep(settle)
        for _, process, _ in self.servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for line, process, log in self.servers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, f"{line}\n{text}"
        self.servers = []

    def start_server(self, line: str, where: str) -> None:
        log = self.workdir / f"server{len(self.servers)}.log"
        with open(log, "wb") as out:
            process = childproc.popen(
                ["bash", "-c", line],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.servers.append((line, process, log))
        self.started_at = time.monotonic()
        deadline = time.monotonic() + SERVER_START
        for port in server_ports(line):
            while not accepts(port):
                assert process.poll() is None, (
                    f"{where}: {line!r} exited {process.returncode}:\n{log.read_text()}"
                )
                assert time.monotonic() < deadline, f"{where}: {line!r} never listened on {port}"
                time.sleep(0.1)  # polling a child's port: nothing to wait on
        if line.startswith("haproxy"):
            time.sleep(2.5)  # its health checks (inter 2s) must mark the servers up

    def run(self, line: str, where: str) -> None:
        if "until Ctrl-C" in line:
            process = childproc.popen(
                ["bash", "-c", line], cwd=self.workdir, env=self.env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            time.sleep(CTRL_C_AFTER)  # let it run a while, as a reader would
            os.killpg(process.pid, signal.SIGINT)
            output, _ = process.communicate(timeout=COMMAND_TIMEOUT)
            # Ctrl-C ends an observation (or a Ping series) by deregistering: exit 0
            # (docs/client.md, exit codes), after what it printed meanwhile.
            assert process.returncode == 0 and output.strip(), f"{where}: {line}\n{output!r}"
            self.log.append(f"{where}: Ctrl-C after {CTRL_C_AFTER:g} s: {line}")
            return
        done = childproc.run(
            ["bash", "-c", line], cwd=self.workdir, env=self.env, capture_output=True,
            timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, (
            f"{where}: {line!r} exited {done.returncode}\n"
            f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
        )
        self.log.append(f"{where}: ran {line}")

    def play(self, block: Block) -> None:
        where = f"{block.page}:{block.line}"
        if block.marker == "not-run":
            assert block.argument, f"{where}: a not-run block needs a reason"
            self.log.append(f"{where}: not run ({block.argument})")
            return
        if block.marker == "file":
            assert block.argument
            (self.workdir / block.argument).write_text(block.text)
            return
        if block.marker == "test-command":
            self.log.append(f"{where}: the test command, run by .ci/run itself")
            return
        if block.marker == "docs-command":
            self.log.append(f"{where}: the docs command, run by test_sphinx_build.py")
            return
        if block.language in ("sh", "bash", "shell"):
            lines = logical_lines(block.text)
            if block.marker == "server-command":
                lines = [lines[0].split("&&")[-1].strip()]  # the install is .ci/run's
            if any(is_server(line) for line in lines):
                self.stop_servers()  # the reader stopped the earlier servers
            for line in lines:
                if is_server(line):
                    self.start_server(line, where)
                else:
                    self.run(line, where)
        elif block.language == "python":
            if block.text.lstrip().startswith(">>>"):
                test = doctest.DocTestParser().get_doctest(block.text, {}, where, where, block.line)
                runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
                result = runner.run(test, out=self.log.append)
                assert result.failed == 0, "\n".join(self.log[-5:])
                return
            script = self.workdir / f"example_{block.line}.py"
            script.write_text(block.text)
            done = childproc.run(
                [str(self.workdir / ".venv" / "bin" / "python"), script.name],
                cwd=self.workdir, env=self.env, capture_output=True, timeout=COMMAND_TIMEOUT,
            )
            assert done.returncode == 0, (
                f"{where}: the Python example exited {done.returncode}\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
            )
            self.log.append(f"{where}: ran the Python example")


@pytest.mark.parametrize("page", PAGES, ids=[page_id(p) for p in PAGES])
def test_every_command_of_the_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    # The pages build on the README, as a reader has it: its files (myapp.py) are there.
    for block in blocks(ROOT / "README.md"):
        if block.marker == "file" and block.argument:
            (tmp_path / block.argument).write_text(block.text)
    player = Player(tmp_path)
    try:
        for block in blocks(page):
            player.play(block)
    finally:
        player.stop_servers()
    print("\n".join(player.log))
    not_run = [entry for entry in player.log if "not run (" in entry]
    print(f"{page_id(page)}: {len(player.log) - len(not_run)} steps run, "
          f"{len(not_run)} blocks not run")


def test_the_install_commands_are_the_ones_ci_runs() -> None:
    readme = list(blocks(ROOT / "README.md"))
    markers = [b.marker for b in readme[:2]]
    assert markers == ["server-command", "test-command"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci  # .ci/run takes the test command from the README itself
    server = logical_lines(readme[0].text)[0]
    assert server.startswith("apt-get install") and server.endswith(".venv/bin/twistd -n coaptcp")


def test_libcoap_s_server_runs_in_the_background_until_its_tcp_port_accepts() -> None:
    line = "coap-server-openssl -A 127.0.0.1 -p 5692 -k 'battery staple' -d 10"
    assert is_server(line) and server_ports(line) == [5692]
    assert server_ports("coap-server-openssl -k key") == [5683]
    assert not is_server("coap-client-openssl -B 5 -P coap+tcp://127.0.0.1 coaps://h/")
