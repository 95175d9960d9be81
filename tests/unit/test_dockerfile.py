"""The Dockerfile and .dockerignore keep the image's promises; no Docker needed.

CI has no Docker daemon, so the image is never built there. Instead this reads
the Dockerfile (a small parser: instructions, `\\` continuations, stages) and
checks what the deployment relies on: a pinned multi-stage build, a numeric
non-root user, the entrypoint and health check, git but no compiler at run time,
no pip cache, every COPY source present in the build context, and every writable
path on the one volume. `dockerfile_problems` returns one line per broken
promise; the mutation tests feed it broken copies to show each check can fail.
tests/scenario/test_wheel_install.py repeats the build's steps without Docker,
with this parser.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

# -- the parser ---------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, …
    args: str  # everything after the keyword, continuation lines joined by a space
    line: int  # where it starts (1-based)


@dataclass
class Stage:
    base: str  # the image, with tag and digest, as written
    name: str | None  # AS name
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order. As Docker does: a trailing `\\` continues the
    instruction, comment lines (also inside a continuation) and blank lines are
    dropped, the `# syntax=` directive is a comment too."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, args = " ".join(p for p in parts if p).partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip(), start))
            parts = []
    if parts:
        keyword, _, args = " ".join(parts).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    return instructions


def split_stages(instructions: list[Instruction]) -> tuple[list[Instruction], list[Stage]]:
    """The global ARGs before the first FROM, and the stages."""
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


def key_values(args: str) -> dict[str, str]:
    """`ENV`/`LABEL`/`ARG` arguments: `k=v k2="v 2"`, or the legacy `ENV k v`."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return {k: v for k, _, v in (w.partition("=") for w in words)}


def environment(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        env.update(key_values(instruction.args))
    return env


def flags_and_words(args: str) -> tuple[dict[str, str], list[str]]:
    """`COPY --from=build a b /dest` → ({"from": "build"}, ["a", "b", "/dest"])."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def exec_form(args: str) -> list[str] | None:
    """The JSON array of ENTRYPOINT/CMD, or None for the shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def shell_commands(run_args: str) -> list[list[str]]:
    """A RUN's shell command (its own flags, `--mount=…`, left out) split at
    &&, ||, ; and |, each one as words."""
    words = shlex.split(re.sub(r"^(?:--\S+\s+)*", "", run_args))
    commands: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", ";", "|"):
            commands.append([])
        elif word.endswith(";"):
            commands[-1].append(word[:-1])
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


# -- .dockerignore --------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # `**/`: any number of folders, even none
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception `!…`, pattern) per line, in order."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip())).lstrip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves `path` (relative, `/`-separated) out of the build
    context: the last rule matching it or one of its parent folders decides."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negated, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


@cache
def repository_files() -> tuple[str, ...]:
    """Tracked files, and new ones not yet committed (not those .gitignore hides)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return tuple(sorted(p for p in listed.split("\0") if p and (REPO_ROOT / p).is_file()))


def build_context(files: tuple[str, ...], dockerignore: str) -> list[str]:
    """What `docker build .` sends: the repository's files less .dockerignore's."""
    rules = dockerignore_rules(dockerignore)
    return [f for f in files if not excluded(f, rules)]


# -- the checks -------------------------------------------------------------------

VOLUME_ENV = ("NEXUS_WORKDIR", "HOME")
COMPILERS = {"gcc", "g++", "cc", "clang", "build-essential", "make", "python3-dev", "libc6-dev"}
# Paths .dockerignore must keep out of the context, whatever else it lets in.
NEVER_IN_CONTEXT = (
    "tests/unit/test_dockerfile.py",
    "tests/data/generic-info.json",
    "bench/results/storm.json",
    "bench/storm.py",
    "docs/status-page.png",
    "deploy/kubernetes/base/deployment.yaml",
    ".venv/bin/python",
    ".git/HEAD",
    "nexus-bot.db",
    "nexus-bot.db-wal",
    "bot/store/left-behind.db",
    "playbooks/local.sqlite3",
    ".nexus-work/mirrors/nexus/ssot.git/HEAD",
    "bot/__pycache__/cli.cpython-311.pyc",
    ".mypy_cache/3.11/bot/cli.meta.json",
    ".ruff_cache/CACHEDIR.TAG",
    ".pytest_cache/v/cache/lastfailed",
    "nexus_incident_bot.egg-info/PKG-INFO",
    "build/lib/bot/cli.py",
    "dist/nexus_incident_bot-0.1.0-py3-none-any.whl",
    ".env",
)
FULL_PATCH_TAG = re.compile(r":\d+\.\d+\.\d+(?:[-.][\w.-]+)?(?:@|$)")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _pyproject_version() -> str:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def _sqlite_path(url: str) -> str | None:
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None


def _under(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


def dockerfile_problems(dockerfile: str, dockerignore: str, files: tuple[str, ...]) -> list[str]:
    """One line per promise the Dockerfile breaks (an empty list: all kept)."""
    problems: list[str] = []
    preamble, stages = split_stages(parse_dockerfile(dockerfile))
    if preamble and any(i.keyword != "ARG" for i in preamble):
        problems.append("only ARG may come before the first FROM")
    if len(stages) < 2:
        return [*problems, f"multi-stage build expected, found {len(stages)} FROM"]
    names = {s.name for s in stages if s.name}
    final = stages[-1]

    # Base images: pinned to a full patch version (or a digest), never latest.
    for stage in stages:
        if stage.base in names:
            continue  # FROM an earlier stage
        if "$" in stage.base:
            problems.append(f"FROM {stage.base}: write the pinned image, not a variable")
        elif stage.base.split("@")[0].endswith(":latest") or ":" not in stage.base.split("/")[-1]:
            problems.append(f"FROM {stage.base}: latest or untagged")
        elif not (FULL_PATCH_TAG.search(stage.base) or DIGEST.search(stage.base)):
            problems.append(f"FROM {stage.base}: pin a full patch version or a digest")
        if "@" in stage.base and not DIGEST.search(stage.base):
            problems.append(f"FROM {stage.base}: malformed digest")
    if final.name is None:
        problems.append("the final stage has no name (FROM … AS runtime)")
    if not re.match(r"(?:docker\.io/)?(?:library/)?python:3\.11\.\d+-slim", final.base):
        problems.append(f"final stage: expected a slim Python 3.11 image, got {final.base}")
    if len({s.base for s in stages if s.base not in names}) > 1:
        problems.append("the stages use different base images (the wheels must match)")

    # Who runs it.
    user = final.last("USER")
    uid, _, gid = (user.args if user else "").partition(":")
    if user is None:
        problems.append("final stage: no USER (runs as root)")
    elif not uid.isdecimal() or (gid and not gid.isdecimal()):
        problems.append(f"USER {user.args}: numeric UID:GID needed for runAsNonRoot")
    elif int(uid) == 0 or (gid and int(gid) == 0):
        problems.append(f"USER {user.args}: root")

    # Nothing fetched from the network by ADD.
    for stage in stages:
        for add in stage.all("ADD"):
            _, words = flags_and_words(add.args)
            if any(re.match(r"(https?|git|ssh)://|git@", w) for w in words[:-1]):
                problems.append(f"line {add.line}: ADD of a remote URL")

    # How it starts, what it exposes, how Docker checks it.
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    if entrypoint is None or exec_form(entrypoint.args) != ["nexus-bot"]:
        problems.append('ENTRYPOINT must be ["nexus-bot"] (exec form: nexus-bot gets SIGTERM)')
    if cmd is None or exec_form(cmd.args) != ["serve"]:
        problems.append('CMD must be ["serve"]')
    if not any("3000" in e.args.replace("/tcp", "").split() for e in final.all("EXPOSE")):
        problems.append("EXPOSE 3000 missing")
    health = final.last("HEALTHCHECK")
    if health is None:
        problems.append("no HEALTHCHECK")
    else:
        probe = health.args.partition("CMD")[2]
        if "/healthz" not in probe:
            problems.append("HEALTHCHECK does not ask /healthz")
        if re.search(r"\b(curl|wget)\b", probe):
            problems.append("HEALTHCHECK uses curl/wget, which the image does not have")

    # What is installed at run time, and how.
    final_apt = [
        (run, command)
        for run in final.all("RUN")
        for command in shell_commands(run.args)
        if command[:2] in (["apt-get", "install"], ["apt", "install"])
    ]
    packages = {w for _, c in final_apt for w in c[2:] if not w.startswith("-")}
    if "git" not in packages:
        problems.append("final stage: git not installed (revert/restore actions need it)")
    for compiler in sorted(COMPILERS & packages):
        problems.append(f"final stage: build tool {compiler} installed")
    for run, command in final_apt:
        if "--no-install-recommends" not in command:
            problems.append(f"line {run.line}: apt-get install without --no-install-recommends")
        if "/var/lib/apt/lists/*" not in run.args:
            problems.append(f"line {run.line}: apt lists not removed in the same RUN")
    for stage in stages:
        for run in stage.all("RUN"):
            for command in shell_commands(run.args):
                if "pip" not in {PurePosixPath(w).name for w in command[:3]}:
                    continue
                action = next((w for w in command if w in ("install", "wheel", "download")), None)
                if action and "--no-cache-dir" not in command:
                    problems.append(f"line {run.line}: pip {action} without --no-cache-dir")

    # The build context: every COPY source exists and .dockerignore lets it in.
    context = set(build_context(files, dockerignore))
    for stage in stages:
        for copy in stage.all("COPY"):
            flags, words = flags_and_words(copy.args)
            if "from" in flags:
                continue
            for source in words[:-1]:
                source = source.rstrip("/").removeprefix("./")
                under = [f for f in files if f == source or _under(f, source)]
                if not under:
                    problems.append(f"line {copy.line}: COPY {source}: not in the repository")
                missing = [f for f in under if f not in context]
                if missing:
                    problems.append(
                        f"line {copy.line}: COPY {source}: left out by .dockerignore: {missing[:3]}"
                    )
    rules = dockerignore_rules(dockerignore)
    for path in NEVER_IN_CONTEXT:
        if not excluded(path, rules):
            problems.append(f".dockerignore lets {path} into the build context")

    # Configuration: the env names what was copied.
    env = environment(final)
    copied = {
        words[-1].rstrip("/"): words[0].rstrip("/")
        for copy in final.all("COPY")
        for flags, words in [flags_and_words(copy.args)]
        if "from" not in flags
    }
    for name, source in (("NEXUS_CONFIG", "config/nexus.yaml"), ("NEXUS_PLAYBOOKS", "playbooks")):
        if copied.get(env.get(name, "")) != source:
            problems.append(f"{name}={env.get(name)} is not where {source} is copied")
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        if env.get(name) != "1":
            problems.append(f"{name}=1 missing")

    # Writable paths: all on the one volume, which is prepared before VOLUME.
    volumes: list[str] = []
    volume_at = len(final.instructions)
    for index, instruction in enumerate(final.instructions):
        if instruction.keyword == "VOLUME":
            declared = exec_form(instruction.args) or instruction.args.split()
            volumes += declared
            volume_at = min(volume_at, index)
    if len(volumes) != 1:
        problems.append(f"expected one VOLUME, found {volumes}")
    volume = volumes[0] if volumes else "/nonexistent-volume"
    database = _sqlite_path(env.get("DATABASE_URL", ""))
    writable = {name: env.get(name) for name in VOLUME_ENV} | {"DATABASE_URL": database}
    for name, value in writable.items():
        if value is None or not value.startswith("/") or not _under(value, volume):
            problems.append(f"{name} ({value}) is not under the VOLUME {volume}")
    runs_before = " ".join(i.args for i in final.instructions[:volume_at] if i.keyword == "RUN")
    runs_after = " ".join(i.args for i in final.instructions[volume_at:] if i.keyword == "RUN")
    if volume not in runs_before:
        problems.append(f"{volume} is not created (and chowned) by a RUN before VOLUME")
    if volume in runs_after:
        problems.append(f"a RUN after VOLUME changes {volume}: Docker discards that")

    # Labels.
    labels: dict[str, str] = {}
    for label in final.all("LABEL"):
        labels.update(key_values(label.args))
    for key in ("title", "description", "source", "licenses", "version"):
        if f"org.opencontainers.image.{key}" not in labels:
            problems.append(f"LABEL org.opencontainers.image.{key} missing")
    if labels.get("org.opencontainers.image.licenses") != "Apache-2.0":
        problems.append("LABEL org.opencontainers.image.licenses must be Apache-2.0")
    args: dict[str, str] = {}
    for arg in final.all("ARG"):
        args.update(key_values(arg.args))
    if args.get("VERSION") != _pyproject_version():
        problems.append(f"ARG VERSION={args.get('VERSION')} differs from pyproject's version")
    return problems


# -- the tests --------------------------------------------------------------------


def _problems(dockerfile: str | None = None, dockerignore: str | None = None) -> list[str]:
    return dockerfile_problems(
        DOCKERFILE.read_text(encoding="utf-8") if dockerfile is None else dockerfile,
        DOCKERIGNORE.read_text(encoding="utf-8") if dockerignore is None else dockerignore,
        repository_files(),
    )


def test_the_dockerfile_keeps_every_promise() -> None:
    assert _problems() == []


def test_the_parser_reads_the_dockerfile_as_docker_does() -> None:
    _, stages = split_stages(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))
    assert [s.name for s in stages] == ["build", "runtime"]
    runtime = stages[-1]
    env = environment(runtime)
    assert env["DATABASE_URL"] == "sqlite:////var/lib/nexus-bot/nexus-bot.db"
    assert env["NEXUS_WORKDIR"] == "/var/lib/nexus-bot/work"
    assert env["HOME"] == "/var/lib/nexus-bot"
    assert env["PATH"] == "/opt/nexus-bot/bin:$PATH"
    # A continued RUN is one instruction, its comment-free lines joined.
    (apt,) = [r for r in runtime.all("RUN") if "apt-get" in r.args]
    assert shell_commands(apt.args) == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "git", "ca-certificates"],
        ["rm", "-rf", "/var/lib/apt/lists/*"],
    ]
    user = runtime.last("USER")
    assert user is not None and user.args == "10001:10001"


def test_the_wheel_is_built_from_the_context_files_the_package_needs() -> None:
    """pyproject reads README.md; the migrations and py.typed are package data in bot/."""
    context = build_context(repository_files(), DOCKERIGNORE.read_text(encoding="utf-8"))
    assert "README.md" in context and "pyproject.toml" in context
    assert "bot/py.typed" in context
    assert "bot/store/migrations/script.py.mako" in context
    assert any(f.startswith("bot/store/migrations/versions/") for f in context)
    assert not any(f.startswith(("tests/", "bench/", "docs/", "deploy/", ".ci/")) for f in context)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*", "tests/unit/x.py", True),
        ("*", ".git/HEAD", True),
        ("**/*.db", "nexus-bot.db", True),
        ("**/*.db", "bot/store/x.db", True),
        ("**/*.db", "bot/store/x.dbx", False),
        ("**/__pycache__", "bot/web/__pycache__/app.cpython-311.pyc", True),
        ("bench/results", "bench/results/a.json", True),
        ("bench/results", "bench/storm.py", False),
        ("*.py[cod]", "a.pyc", True),
        ("*.py[cod]", "a.py", False),
        ("docs/*.png", "docs/a/b.png", False),
    ],
)
def test_dockerignore_patterns_match_as_docker_matches(
    pattern: str, path: str, expected: bool
) -> None:
    assert excluded(path, dockerignore_rules(pattern)) is expected


def test_dockerignore_exceptions_let_files_back_in_and_the_last_rule_wins() -> None:
    rules = dockerignore_rules("*\n!bot\n**/__pycache__\n!config/nexus.yaml\n")
    assert not excluded("bot/cli.py", rules)
    assert excluded("bot/__pycache__/cli.pyc", rules)
    assert not excluded("config/nexus.yaml", rules)
    assert excluded("config/slack-app-manifest.yaml", rules)
    assert excluded("tests/conftest.py", rules)


# Each mutation breaks one promise; the checker must name it.
_, _STAGES = split_stages(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))
BUILD_FROM, RUNTIME_FROM = (
    f"FROM {_STAGES[0].base} AS build",
    f"FROM {_STAGES[-1].base} AS runtime",
)
MUTATIONS = [
    ("single stage", BUILD_FROM + "\n", "", "multi-stage build expected"),
    ("latest base", RUNTIME_FROM, "FROM python:latest AS runtime", "latest or untagged"),
    ("untagged base", BUILD_FROM, "FROM python AS build", "latest or untagged"),
    (
        "minor-only tag",
        RUNTIME_FROM,
        "FROM python:3.11-slim AS runtime",
        "pin a full patch version",
    ),
    ("short digest", "@sha256:", "@sha256:0", "malformed digest"),
    ("other python", RUNTIME_FROM, "FROM python:3.12.8-slim-bookworm AS runtime", "Python 3.11"),
    ("two bases", RUNTIME_FROM, "FROM python:3.11.11-slim-bookworm AS runtime", "different base"),
    ("unnamed final stage", RUNTIME_FROM, RUNTIME_FROM[: -len(" AS runtime")], "no name"),
    ("root user", "USER 10001:10001", "USER root", "numeric UID:GID"),
    ("uid 0", "USER 10001:10001", "USER 0:0", ": root"),
    ("no user", "USER 10001:10001\n", "", "no USER"),
    (
        "remote ADD",
        "COPY playbooks/ /app/playbooks/",
        "COPY playbooks/ /app/playbooks/\nADD https://example.test/x.tgz /tmp/",
        "ADD of a remote URL",
    ),
    ("shell-form entrypoint", 'ENTRYPOINT ["nexus-bot"]', "ENTRYPOINT nexus-bot", "ENTRYPOINT"),
    ("other cmd", 'CMD ["serve"]', 'CMD ["validate"]', "CMD must be"),
    ("no expose", "EXPOSE 3000", "EXPOSE 8080", "EXPOSE 3000"),
    ("health on /", "/healthz'", "/'", "does not ask /healthz"),
    ("health by curl", 'CMD ["python", "-c"', 'CMD ["curl", "-c"', "curl/wget"),
    ("no git", "recommends git ca-certificates", "recommends ca-certificates", "git not installed"),
    ("gcc at run time", "git ca-certificates", "git ca-certificates gcc", "build tool gcc"),
    ("recommends", "--no-install-recommends git", "git", "--no-install-recommends"),
    ("apt lists kept", "&& rm -rf /var/lib/apt/lists/*", "", "apt lists not removed"),
    ("pip cache (wheel)", "wheel --no-cache-dir", "wheel", "pip wheel without --no-cache-dir"),
    ("pip cache (install)", "install --no-cache-dir", "install", "install without --no-cache"),
    ("missing source", "COPY playbooks/", "COPY runbooks/", "not in the repository"),
    ("config path", "NEXUS_CONFIG=/app/config/", "NEXUS_CONFIG=/etc/", "NEXUS_CONFIG="),
    ("workdir off the volume", "NEXUS_WORKDIR=/var/lib/nexus-bot/work", "NEXUS_WORKDIR=/w", "(/w)"),
    ("database off the volume", "sqlite:////var/lib/nexus-bot/", "sqlite:///", "DATABASE_URL"),
    ("home off the volume", "HOME=/var/lib/nexus-bot", "HOME=/home/nexus", "HOME (/home/nexus)"),
    ("no volume", 'VOLUME ["/var/lib/nexus-bot"]', "", "expected one VOLUME"),
    (
        "volume prepared too late",
        'VOLUME ["/var/lib/nexus-bot"]',
        'VOLUME ["/var/lib/nexus-bot"]\nRUN chown 10001 /var/lib/nexus-bot',
        "after VOLUME",
    ),
    ("bytecode", "PYTHONDONTWRITEBYTECODE=1", "PYTHONDONTWRITEBYTECODE=0", "PYTHONDONTWRITEBYTE"),
    ("license", 'licenses="Apache-2.0"', 'licenses="MIT"', "Apache-2.0"),
    ("no source label", "org.opencontainers.image.source=", "x=", "image.source missing"),
    ("version", "ARG VERSION=", "ARG VERSION=9.9.9", "ARG VERSION=9.9.9"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [pytest.param(old, new, expected, id=name) for name, old, new, expected in MUTATIONS],
)
def test_a_broken_dockerfile_is_caught(old: str, new: str, expected: str) -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert old in dockerfile, f"the mutation no longer applies: {old!r}"
    problems = _problems(dockerfile.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_a_two_line_dockerfile_fails_many_checks() -> None:
    problems = _problems("FROM python:latest\nRUN pip install nexus-incident-bot\n")
    assert problems == ["multi-stage build expected, found 1 FROM"]
    bad = "FROM python:latest AS a\nFROM python:3.11 AS b\nRUN pip install x\nADD http://x/y /z\n"
    problems = _problems(bad)
    for expected in (
        "FROM python:latest: latest",
        "pin a full patch version",
        "no USER",
        "ADD of a remote URL",
        "ENTRYPOINT",
        "no HEALTHCHECK",
        "git not installed",
        "pip install without --no-cache-dir",
        "expected one VOLUME",
    ):
        assert any(expected in p for p in problems), (expected, problems)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("!playbooks\n", "", "COPY playbooks: left out by .dockerignore"),
        ("!README.md\n", "", "COPY README.md: left out"),
        ("\n*\n", "\n", ".dockerignore lets tests/unit/test_dockerfile.py"),
        ("**/*.db\n", "", ".dockerignore lets bot/store/left-behind.db"),
        ("!bot\n", "!bot\n!tests\n", ".dockerignore lets tests/"),
    ],
)
def test_a_broken_dockerignore_is_caught(old: str, new: str, expected: str) -> None:
    dockerignore = DOCKERIGNORE.read_text(encoding="utf-8")
    assert old in dockerignore
    problems = _problems(dockerignore=dockerignore.replace(old, new, 1))
    assert any(expected in p for p in problems), problems
