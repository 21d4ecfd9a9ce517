"""Installs what the local stack runs: PostgreSQL, the Kafka broker, Mailpit, Jaeger and Zipkin
(and swaks, the SMTP client the ``make run`` banner shows).

Every installer is idempotent and returns at once when its result is there. Builds go to the
user cache (``$XDG_CACHE_HOME/sendarix``), which survives fresh clones on the same machine; a
build interrupted halfway is redone, never half-used (results appear by rename or behind a
completion marker). Missing system packages are installed with apt-get when running as root.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.stack.console import log_tail, say
from libs.settings import REPO_ROOT

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sendarix"
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
JAEGER_MODULE = REPO_ROOT / "deploy" / "tools" / "jaeger"
MAILPIT_VERSION = "1.33.1"
ZIPKIN_VERSION = "3.5.1"
POSTGRES_ROOT = Path("/usr/lib/postgresql")

APT_PACKAGES = {"java": "default-jre-headless", "mvn": "maven", "go": "golang"}
"""The Debian package that brings each command the installers need."""


class ToolError(RuntimeError):
    """A prerequisite is missing and cannot be installed from here, or a build failed."""


def run_logged(
    argv: Sequence[str | Path],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> None:
    """Run a set-up command with its output appended to ``log``; fail with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        result = subprocess.run(
            [str(arg) for arg in argv],
            cwd=cwd,
            env=env,
            user=user,
            group=user,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise ToolError(
            f"{Path(str(argv[0])).name} exited with code {result.returncode}; "
            f"last lines of {log}:\n{log_tail(log)}"
        )


def _can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_install(*packages: str) -> None:
    say(f"installing {' '.join(packages)} with apt-get — first run only…")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = CACHE / "logs" / "apt-get.log"
    run_logged(["apt-get", "update"], log, env=env)
    run_logged(["apt-get", "install", "-y", "--no-install-recommends", *packages], log, env=env)


def require_commands(*commands: str) -> None:
    """Make sure each command is on PATH, installing its Debian package when we can."""
    missing = [command for command in commands if shutil.which(command) is None]
    if not missing:
        return
    packages = [APT_PACKAGES[command] for command in missing]
    if not _can_apt():
        raise ToolError(
            f"{', '.join(missing)} not found; install it first, e.g. "
            f"`sudo apt-get install -y {' '.join(packages)}`"
        )
    _apt_install(*packages)


def _postgres_bin_dirs() -> list[Path]:
    found = [path.parent for path in POSTGRES_ROOT.glob("*/bin/postgres")]
    return sorted(
        found, key=lambda bin_dir: [int(p) for p in re.findall(r"\d+", bin_dir.parent.name)]
    )


def postgres_bin() -> Path:
    """The ``bin`` folder of the newest PostgreSQL server installed (initdb, postgres)."""
    if not _postgres_bin_dirs():
        if not _can_apt():
            raise ToolError(
                f"no PostgreSQL server under {POSTGRES_ROOT}; install it first, e.g. "
                "`sudo apt-get install -y postgresql`"
            )
        _apt_install("postgresql")
    found = _postgres_bin_dirs()
    if not found:
        raise ToolError(f"apt-get installed postgresql, yet no server is under {POSTGRES_ROOT}")
    return found[-1]


def kafka_jars() -> Path:
    """The folder of every jar the Kafka broker needs, fetched by Maven (deploy/kafka/pom.xml)."""
    pom = KAFKA_POM.read_bytes()
    version_tag = re.search(rb"<kafka.version>([^<]+)</kafka.version>", pom)
    version = version_tag.group(1).decode() if version_tag else "unknown"
    home = CACHE / f"kafka-{version}-{hashlib.sha256(pom).hexdigest()[:12]}"
    libs, complete = home / "libs", home / "complete"
    if complete.exists():
        return libs
    require_commands("java", "mvn")
    say(f"fetching Apache Kafka {version} from Maven Central — first run only, about 10 seconds…")
    shutil.rmtree(home, ignore_errors=True)
    libs.mkdir(parents=True)
    run_logged(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            KAFKA_POM,
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        home / "mvn.log",
    )
    complete.touch()
    return libs


def zipkin_jar() -> Path:
    """Zipkin's self-contained server jar (the tracing UI), fetched by Maven from Maven Central."""
    home = CACHE / f"zipkin-{ZIPKIN_VERSION}"
    jar = home / f"zipkin-server-{ZIPKIN_VERSION}-exec.jar"
    if jar.exists():
        return jar
    require_commands("java", "mvn")
    say(f"fetching Zipkin {ZIPKIN_VERSION} from Maven Central — first run only, about 130 MB…")
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=".fetch-") as fetched:
        run_logged(
            [
                "mvn",
                "-q",
                "-B",
                "dependency:copy",
                f"-Dartifact=io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:exec",
                f"-DoutputDirectory={fetched}",
            ],
            home / "mvn.log",
            cwd=home,
        )
        os.replace(Path(fetched) / jar.name, jar)
    return jar


def _go_install(what: str, target: Path, package: str, cwd: Path) -> Path:
    """``go install`` a command into a scratch GOBIN, then move the binary to ``target``."""
    require_commands("go")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as gobin:
        run_logged(
            ["go", "install", "-ldflags=-s -w", package],
            CACHE / "logs" / f"{what}-build.log",
            cwd=cwd,
            env={**os.environ, "GOBIN": gobin},
        )
        os.replace(Path(gobin) / what, target)
    return target


def mailpit_binary() -> Path:
    """The Mailpit binary (the local mail catcher), built from the Go module proxy."""
    target = CACHE / "bin" / f"mailpit-{MAILPIT_VERSION}"
    if target.exists():
        return target
    say(f"building Mailpit v{MAILPIT_VERSION} — first run only, about a minute…")
    return _go_install("mailpit", target, f"github.com/axllent/mailpit@v{MAILPIT_VERSION}", CACHE)


def jaeger_binary() -> Path:
    """The Jaeger v2 binary, built from the module pinned in deploy/tools/jaeger/go.mod.

    ``go install jaeger@version`` refuses Jaeger (its go.mod has replace directives), so a small
    module of our own requires it and the build runs there.
    """
    go_mod = (JAEGER_MODULE / "go.mod").read_text()
    pinned = re.search(r"github.com/jaegertracing/jaeger (v\S+)", go_mod)
    version = pinned.group(1).lstrip("v") if pinned else "unknown"
    target = CACHE / "bin" / f"jaeger-{version}"
    if target.exists():
        return target
    say(f"building Jaeger v{version} — first run only, about 4 minutes…")
    return _go_install(
        "jaeger", target, "github.com/jaegertracing/jaeger/cmd/jaeger", JAEGER_MODULE
    )


def swaks() -> Path | None:
    """swaks, to try the SMTP submission door from a shell: installed with apt-get when it is
    missing and we can, else None — nothing needs it, so its absence only drops a hint."""
    found = shutil.which("swaks")
    if _can_apt() and (found is None or not _swaks_has_tls()):
        _apt_install("swaks", "libnet-ssleay-perl")  # swaks only recommends its TLS module
        found = shutil.which("swaks")
    return Path(found) if found else None


POSTFIX_PACKAGES = ("postfix", "libsasl2-modules", "sasl2-bin")
"""A real MTA for the relay tests (STARTTLS and SASL AUTH through cyrus sasldb)."""


def postfix() -> Path | None:
    """postfix and the cyrus SASL tools, for the tests of relay routes that require STARTTLS
    and AUTH: installed with apt-get when missing and we can, else None (those tests skip).

    Debconf is told "No configuration", so the package neither writes a main.cf nor starts a
    system mail server; the tests run instances of their own (``postfix -c``).
    """
    found = shutil.which("postfix") or shutil.which("postfix", path="/usr/sbin")
    if _can_apt() and (found is None or shutil.which("saslpasswd2") is None):
        preseed = b"postfix postfix/main_mailer_type select No configuration\n"
        subprocess.run(["debconf-set-selections"], input=preseed, check=True)
        _apt_install(*POSTFIX_PACKAGES)
        found = shutil.which("postfix") or shutil.which("postfix", path="/usr/sbin")
    return Path(found) if found else None


CHROMIUM_PACKAGES = ("chromium", "chromium-driver")
"""The browser the console's tests drive (Playwright launches Debian's build: its own
download is out of reach here)."""


def chromium() -> Path | None:
    """Debian's Chromium, for the console's browser tests: installed with apt-get when missing
    and we can, else None (those tests then fail and say why)."""
    found = shutil.which("chromium")
    if found is None and _can_apt():
        _apt_install(*CHROMIUM_PACKAGES)
        found = shutil.which("chromium")
    return Path(found) if found else None


def _swaks_has_tls() -> bool:
    probe = ["perl", "-MNet::SSLeay", "-e1"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def install_all() -> None:
    """Install everything the local stack runs (a no-op when it is all there already)."""
    swaks()
    postgres_bin()
    kafka_jars()
    mailpit_binary()
    jaeger_binary()
    zipkin_jar()
