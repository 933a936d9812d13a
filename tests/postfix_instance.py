"""A throwaway Postfix instance for integration tests (needs root and Debian's postfix).

Everything lives in one temporary folder: configuration, queue, mailboxes
(Maildir, via the virtual delivery agent) and the log. SMTP listens on
127.0.0.1 only, on a free port; ``smtpd_milters`` points at the milter.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

MASTER_CF = """\
{smtp_addr} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_relay_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = example.test, q.example.test
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
message_size_limit = 30000000
smtpd_milters = inet:127.0.0.1:{milter_port}
non_smtpd_milters =
milter_default_action = {milter_default_action}
milter_protocol = 6
milter_content_timeout = 30s
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
smtpd_tls_security_level = none
smtp_tls_security_level = none
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostfixInstance:
    """Configure, start and stop a private Postfix; read what was delivered."""

    def __init__(
        self, root: Path, milter_port: int, mailboxes: list[str], milter_default_action: str = "tempfail"
    ):
        self.root = root
        self.etc = root / "etc"
        self.smtp_port = free_port()
        self.milter_port = milter_port
        self.mailboxes = mailboxes
        self.milter_default_action = milter_default_action

    def start(self) -> None:
        for d in ("etc", "queue", "data", "mail"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix", "postfix")
        # The virtual delivery agent refuses uid 0: mailboxes belong to "nobody".
        uid, gid = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid
        os.chown(self.root / "mail", uid, gid)
        (self.etc / "main.cf").write_text(
            MAIN_CF.format(
                root=self.root,
                uid=uid,
                gid=gid,
                milter_port=self.milter_port,
                milter_default_action=self.milter_default_action,
            )
        )
        (self.etc / "master.cf").write_text(MASTER_CF.format(smtp_addr=f"127.0.0.1:{self.smtp_port}"))
        (self.etc / "vmailbox").write_text("".join(f"{m} {m}/\n" for m in self.mailboxes))
        os.chmod(self.root, 0o755)
        self._postfix("start")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"postfix did not listen on {self.smtp_port}: {self.log()[-2000:]}")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.etc), *args], capture_output=True, text=True, check=True, timeout=60
        )

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.etc), "abort"], capture_output=True, timeout=60)

    def flush(self) -> None:
        subprocess.run(["postqueue", "-c", str(self.etc), "-f"], capture_output=True, timeout=60)

    def log(self) -> str:
        p = self.root / "maillog"
        return p.read_text(errors="replace") if p.exists() else ""

    def delivered(self, mailbox: str) -> list[bytes]:
        new = self.root / "mail" / mailbox / "new"
        if not new.is_dir():
            return []
        # In delivery order: a Maildir name starts with the second of delivery, and two messages
        # delivered in the same second sorted by the rest of the name (device, inode), so "the last
        # delivered" was sometimes the one before it (a CI failure under load).
        files = [(f.stat().st_mtime_ns, f.name, f) for f in new.iterdir()]
        return [f.read_bytes() for _, _, f in sorted(files)]

    def wait_delivered(self, mailbox: str, count: int, timeout: float = 30) -> list[bytes]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.delivered(mailbox)
            if len(got) >= count:
                return got
            time.sleep(0.2)
        return self.delivered(mailbox)
