"""The container image's steps, without Docker: wheel, venv, config, read-only root.

CI has no Docker daemon, so this does what the Dockerfile does, on this machine,
reading the Dockerfile itself (tests/unit/test_dockerfile.py's parser):

- the build context is the repository's files less .dockerignore's;
- the build stage's COPYs lay out its sources and its `pip wheel` command runs
  (the project's wheel and one per dependency, binary only);
- the runtime stage's venv command and offline `pip install` run, its COPYs place
  config/nexus.yaml and playbooks/, its ENV is the bot's environment.

Image paths live under a temporary "root" (`/app` is `<root>/app`), except the
VOLUME, which each test mounts afresh, empty, as Kubernetes mounts an emptyDir
or a new PVC. The bot then runs from WORKDIR with that root read-only: the files
are made unwritable and, when the tests run as root (CI does), the bot's
processes lose the capabilities that let root write anyway. Only the volume and
a stand-in for /tmp stay writable.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
import pytest

from tests.support.bot_process import SETTING_NAMES, free_port
from tests.unit.test_dockerfile import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPO_ROOT,
    Stage,
    build_context,
    environment,
    exec_form,
    flags_and_words,
    parse_dockerfile,
    repository_files,
    shell_commands,
    split_stages,
)

PLAYBOOK_COUNT = 7  # playbooks/*.yaml
# What `validate`, `db upgrade` and `serve` import (bot/cli.py imports them lazily).
IMPORTED = ("bot.cli", "bot.commands.validate", "bot.commands.audit", "bot.server")
# Linux capabilities that let root ignore file permissions (linux/capability.h).
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
PR_CAPBSET_DROP = 24


# Looked up here, not in the forked child (which must not take the loader's lock).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _as_if_not_root() -> None:
    """In the child, before exec: drop root's power over file permissions, so a
    read-only directory is read-only for the bot as for UID 10001 in the image."""
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if _prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


PREEXEC: Callable[[], None] | None = _as_if_not_root if os.geteuid() == 0 else None


@dataclass
class Image:
    root: Path  # the image's `/`
    volume_path: str  # the VOLUME, as the Dockerfile names it
    workdir: Path  # the runtime stage's WORKDIR (read-only)
    wheels: Path
    venv: Path
    image_env: dict[str, str]  # the runtime stage's ENV, as written

    def path(self, image_path: str, volume: Path) -> Path:
        """Where an image path is here: the VOLUME's under `volume`, the rest under root."""
        pure = PurePosixPath(image_path)
        if pure.is_relative_to(self.volume_path):
            return volume / pure.relative_to(self.volume_path)
        return self.root / pure.relative_to("/")

    def env(self, volume: Path, **extra: str) -> dict[str, str]:
        """The bot's environment in the image, with `volume` mounted on the VOLUME.
        Nothing of this machine's bot settings or of the development venv."""
        base = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in SETTING_NAMES
            and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "HOME")
        }
        dev_venv = str(REPO_ROOT / ".venv")
        host_path = [
            p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(dev_venv)
        ]
        env = dict(base)
        for name, value in self.image_env.items():
            if name == "PATH":
                value = os.pathsep.join(
                    os.pathsep.join(host_path) if p == "$PATH" else str(self.path(p, volume))
                    for p in value.split(":")
                )
            elif value.startswith("sqlite:////"):
                value = f"sqlite:///{self.path(value.removeprefix('sqlite:///'), volume)}"
            elif value.startswith("/"):
                value = str(self.path(value, volume))
            env[name] = value
        # /tmp is writable in the pod (an emptyDir); here a folder of its own.
        tmp = self.root / "tmp"
        return {**env, "TMPDIR": str(tmp), "HOST": "127.0.0.1", **extra}

    def run(self, argv: list[str], volume: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env(volume, **extra),
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=PREEXEC,
        )


def _stages() -> list[Stage]:
    _, stages = split_stages(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))
    return stages


def _copy_into(stage: Stage, context: Path, root: Path) -> str:
    """The stage's COPYs from the build context (Docker's rules for folders and
    trailing slashes); returns its last WORKDIR."""
    workdir = PurePosixPath("/")
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.args
        if instruction.keyword != "COPY":
            continue
        flags, words = flags_and_words(instruction.args)
        if "from" in flags:
            continue
        *sources, dest = words
        target = root / (workdir / dest).relative_to("/")
        for source in sources:
            origin = context / source
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                into = dest.endswith("/") or len(sources) > 1
                (target if into else target.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name if into else target)
    return str(workdir)


def _run_commands(stage: Stage, marker: str, cwd: Path, rebase: Callable[[str], str]) -> None:
    """Run the RUN of `stage` that mentions `marker`, command by command (no shell),
    its image paths rebased. The base image's `python` is `rebase("python")`."""
    (run,) = [r for r in stage.all("RUN") if marker in r.args]
    for command in shell_commands(run.args):
        argv = [rebase(word) for word in command]
        if "pip" in argv[:3]:
            # No --no-cache-dir here: pip's download cache makes a developer's
            # second run faster; the image keeps no cache, this machine may.
            # --no-compile: bytecode for ~60 packages costs ~20 s; the image
            # compiles it, which changes nothing of what is tested here.
            argv = [w for w in argv if w != "--no-cache-dir"]
            if "install" in argv:
                argv.insert(argv.index("install") + 1, "--no-compile")
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def _make_read_only(top: Path) -> None:
    for folder, _, names in os.walk(top):
        for name in names:
            path = Path(folder, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)
        Path(folder).chmod(0o555)


def _make_writable(top: Path) -> None:
    for folder, dirs, names in os.walk(top):
        Path(folder).chmod(0o755)
        for name in dirs + names:
            path = Path(folder, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _snapshot(top: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Every file and folder under `top` but `skip`, with its size and mtime."""
    found = {}
    for folder, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if Path(folder, d) not in skip]
        for name in dirs + names:
            info = Path(folder, name).lstat()
            found[str(Path(folder, name).relative_to(top))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    root = tmp_path_factory.mktemp("image")
    build, runtime = _stages()[0], _stages()[-1]

    # The build context, as `docker build .` sends it.
    context = tmp_path_factory.mktemp("context")
    for name in build_context(repository_files(), DOCKERIGNORE.read_text(encoding="utf-8")):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, context / name)

    # The base image's Python: this interpreter's, in a venv of its own with a
    # current pip (the base image ships one). pip 23's resolver spends ~20 s more
    # on botocore's thousands of release files.
    base_python = tmp_path_factory.mktemp("base-image") / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", base_python], check=True)
    python = str(base_python / "bin" / "python")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "pip>=24"],
        check=True,
        capture_output=True,
    )

    def rebase(word: str) -> str:
        if word == "python":
            return python
        key, eq, value = word.partition("=")
        if eq and key.startswith("--") and value.startswith("/"):
            return f"{key}={root / value.lstrip('/')}"
        return str(root / word.lstrip("/")) if word.startswith("/") else word

    # Build stage: sources, then wheels.
    src = root / _copy_into(build, context, root).lstrip("/")
    _run_commands(build, "pip wheel", src, rebase)
    # Runtime stage: the venv and the offline install (its bind mount of the build
    # stage's /wheels is the same folder here), then config and playbooks.
    _run_commands(runtime, "venv", root, rebase)
    workdir = root / _copy_into(runtime, context, root).lstrip("/")

    env = environment(runtime)
    (volume_path,) = exec_form(runtime.all("VOLUME")[0].args) or []
    venv = root / env["PATH"].split(":")[0].lstrip("/")
    # The image holds bytecode for everything (pip compiles it at build time);
    # here only for what the bot imports, written by one import before the root
    # turns read-only. Without it each command below compiles ~1,000 modules in
    # memory: seconds each on a busy CI machine.
    writes_bytecode = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [venv / "python", "-c", f"import {', '.join(IMPORTED)}"], env=writes_bytecode, check=True
    )
    (root / "tmp").mkdir()
    for top in (root / "app", root / "opt", root / "src", root / "wheels"):
        _make_read_only(top)
    root.chmod(0o555)
    try:
        yield Image(root, volume_path, workdir, root / "wheels", venv.parent, env)
    finally:
        _make_writable(root)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A fresh, empty volume for one test."""
    folder = tmp_path / "volume"
    folder.mkdir()
    return folder


def test_the_wheel_holds_the_package_data_and_no_tests(image: Image) -> None:
    (wheel,) = image.wheels.glob("nexus_incident_bot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bot/py.typed" in names
    assert "bot/store/migrations/script.py.mako" in names
    migrations = sorted(n for n in names if n.startswith("bot/store/migrations/versions/"))
    shipped = sorted(
        f"bot/store/migrations/versions/{p.name}"
        for p in (REPO_ROOT / "bot/store/migrations/versions").glob("*.py")
    )
    assert migrations == shipped and len(shipped) >= 8
    assert not [n for n in names if n.startswith(("tests/", "bench/", "docs/", "deploy/"))]
    assert not [n for n in names if n.endswith((".db", ".pyc")) or "__pycache__" in n]
    # Only wheels: a dependency built from source would have needed a compiler.
    assert all(p.suffix == ".whl" for p in image.wheels.iterdir())


def test_the_venv_holds_the_bot_and_nothing_of_the_build(image: Image, volume: Path) -> None:
    env = image.env(volume)
    assert shutil.which("nexus-bot", path=env["PATH"]) == str(image.venv / "bin" / "nexus-bot")
    assert str(REPO_ROOT) not in env["PATH"]
    assert shutil.which("git", path=env["PATH"])  # the revert and restore actions need it
    # The venv has the bot and its dependencies, no pip, no tests' packages.
    site = next((image.venv / "lib").glob("python3.*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"nexus_incident_bot", "slack_bolt", "alembic", "uvicorn", "boto3"} <= installed
    assert not installed & {"pip", "pytest", "httpx", "hypothesis", "setuptools"}
    # The premise of the read-only tests: the bot's processes cannot write here.
    probe = image.run(["python", "-c", "open('probe', 'w')"], volume)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr


def test_validate_loads_the_packaged_config_and_playbooks(image: Image, volume: Path) -> None:
    done = image.run(["nexus-bot", "validate"], volume)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok: config and {PLAYBOOK_COUNT} playbooks valid" in done.stdout
    listed = [line for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(listed) == PLAYBOOK_COUNT
    playbooks = image.workdir / "playbooks"
    assert all(f"({playbooks}/" in line for line in listed), listed
    assert list(volume.iterdir()) == []  # validate creates no database


def test_db_upgrade_creates_the_schema_on_the_volume(image: Image, volume: Path) -> None:
    done = image.run(["nexus-bot", "db", "upgrade"], volume)
    assert done.returncode == 0, done.stdout + done.stderr
    database = image.path(image.image_env["DATABASE_URL"].removeprefix("sqlite:///"), volume)
    assert database.parent == volume and database.is_file()
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"incidents", "audit_log", "outbox", "inbox", "alembic_version"} <= tables


def test_serve_on_a_read_only_root(image: Image, volume: Path, tmp_path: Path) -> None:
    runtime = _stages()[-1]
    before = _snapshot(image.root, skip=(image.root / "tmp",))
    argv = (exec_form(runtime.all("ENTRYPOINT")[-1].args) or []) + (
        exec_form(runtime.all("CMD")[-1].args) or []
    )
    health = exec_form(runtime.all("HEALTHCHECK")[-1].args.partition("CMD")[2].strip())
    assert argv == ["nexus-bot", "serve"] and health is not None
    log = tmp_path / "serve.log"
    for attempt in range(3):
        port = free_port()
        env = image.env(volume, PORT=str(port))
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                argv,
                cwd=image.workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=PREEXEC,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_for_200(f"{url}/healthz", proc, log)
            except AssertionError:
                if attempt < 2 and "address already in use" in log.read_text():
                    continue  # another test took the port between free_port() and the bind
                raise
            _wait_for_200(f"{url}/readyz", proc, log)
            # The image's HEALTHCHECK as Docker runs it: exec form, the image's env.
            assert subprocess.run(health, cwd=image.workdir, env=env, timeout=30).returncode == 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
            gone = subprocess.run(health, cwd=image.workdir, env=env, capture_output=True)
            assert gone.returncode != 0  # it notices when the bot is gone
            break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    problems = [x for x in lines if x.get("level") in ("warning", "error", "critical")]
    assert not [x for x in problems if "ermission" in str(x) or "ead-only" in str(x)], problems
    (paths,) = [x for x in lines if x["event"] == "paths"]
    assert paths["config"] == str(image.workdir / "config" / "nexus.yaml")
    assert paths["playbooks"] == str(image.workdir / "playbooks")
    assert paths["workdir"] == str(volume / "work")
    assert paths["database"] == f"sqlite:///{volume / 'nexus-bot.db'}"
    # Nothing written outside the volume (and /tmp); the database is on it.
    assert _snapshot(image.root, skip=(image.root / "tmp",)) == before
    assert (volume / "nexus-bot.db").is_file()


def _wait_for_200(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    # Generous: on a busy 2-core CI machine, imports alone have taken 8 s.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"bot exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not 200 within 60 s: {log.read_text()[-3000:]}")
