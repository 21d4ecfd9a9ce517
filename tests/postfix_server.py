"""A real postfix on loopback that requires STARTTLS and SASL AUTH, relaying to Mailpit.

An instance of its own (``postfix -c <folder>``: configuration, queue and data under one
temporary folder, no chroot), listening on one port of loopback only; the system's postfix,
if any, is neither read nor touched. Logins live in a cyrus sasldb of the instance's own.
Starting it needs root (postfix's daemons drop to the ``postfix`` user) and the packages
``deploy.stack.tools.postfix`` installs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SASL_REALM = "sendarix.test"
POSTFIX = shutil.which("postfix") or shutil.which("postfix", path="/usr/sbin")
SASLPASSWD = shutil.which("saslpasswd2") or shutil.which("saslpasswd2", path="/usr/sbin")
STARTUP_SECONDS = 20.0


def unavailable() -> str | None:
    """Why no postfix can be run here, or None when one can."""
    if POSTFIX is None or SASLPASSWD is None:
        return "postfix or saslpasswd2 missing (python -m deploy.stack install installs them)"
    if os.geteuid() != 0:
        return "running postfix needs root"
    return None


MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _main_cf(folder: Path, relay_port: int, cert: Path, key: Path) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {folder / "queue"}
data_directory = {folder / "data"}
myhostname = relay.{SASL_REALM}
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
maillog_file = {folder / "maillog"}
maillog_file_prefixes = {folder}
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = {SASL_REALM}
cyrus_sasl_config_path = {folder / "sasl"}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtp_tls_security_level = none
"""


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_postfix(
    port: int, relay_port: int, cert: Path, key: Path, logins: dict[str, str]
) -> Iterator[Path]:
    """A postfix on ``127.0.0.1:port`` relaying to ``relay_port``, taking ``logins`` (user:
    password) after STARTTLS with ``cert``; yields its folder, removed when the block ends."""
    assert POSTFIX is not None and SASLPASSWD is not None, unavailable()
    if _listening(port):
        raise RuntimeError(f"port {port} is taken: a postfix of an earlier run still up?")
    folder = Path(tempfile.mkdtemp(prefix="sendarix-postfix-"))
    folder.chmod(0o755)  # the daemons run as the postfix user
    config = ["-c", str(folder)]
    try:
        for name in ("queue", "data", "sasl"):
            (folder / name).mkdir(mode=0o755)
        shutil.chown(folder / "data", "postfix")
        tls_key = folder / "tls.key"
        shutil.copyfile(key, tls_key)
        tls_key.chmod(0o600)
        (folder / "main.cf").write_text(_main_cf(folder, relay_port, cert, tls_key))
        (folder / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{port}"))
        sasldb = folder / "sasl" / "sasldb2"
        for user, password in logins.items():
            subprocess.run(
                [SASLPASSWD, "-f", sasldb, "-c", "-p", "-u", SASL_REALM, user],
                input=password.encode(),
                check=True,
            )
        shutil.chown(sasldb, "postfix")
        (folder / "sasl" / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
            f"sasldb_path: {sasldb}\nmech_list: PLAIN LOGIN\n"
        )
        started = subprocess.run([POSTFIX, *config, "start"], capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed: {started.stderr} {_log(folder)}")
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _listening(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not listen on {port}: {_log(folder)}")
            time.sleep(0.1)
        yield folder
    finally:
        subprocess.run([POSTFIX, *config, "stop"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _log(folder: Path) -> str:
    log = folder / "maillog"
    return log.read_text()[-2000:] if log.exists() else "(no log)"
