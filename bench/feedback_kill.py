"""kill -9 during feedback: every acknowledged report must be in the store after a restart.

    python bench/feedback_kill.py [--rounds 20] [--threads 4] [--seed 0]

Each round starts ``spamgate serve`` (``service.api.launch.start_serve``, the
bundled model, ``[feedback] db`` in a temporary folder, the same file every
round), and ``--threads`` clients file ``ReportFeedback`` calls as fast as
they can: unique generated messages by their bytes, and (one of the threads)
by the ``verdict_id`` of a verdict just received. Each round first times one
``Classify`` (``first_classify_ms``: the scoring workers load the model on
their first message). At a seeded random moment
(``--min-seconds`` to ``--max-seconds`` after the first acknowledgement) the
server is killed with SIGKILL. Then:

- the store is opened here (``service.lifecycle.feedback_store.FeedbackStore``) and checked:
  ``PRAGMA integrity_check`` must say ok, and every report the clients got a
  ``FeedbackResponse`` for must be in it (``history`` of its sha256 holds a
  report with that label and reporter); one that is not is *lost*;
- the server's children (scoring workers) must be gone within 10 s of the
  kill: they are not told, they see their pipe close (left-over ones are
  counted and killed);
- the next round restarts the server on the same file (it must start).

Figures per round and in total: acknowledged reports, lost (must be 0),
reports stored but not acknowledged (in flight at the kill: allowed), DB
integrity, restart ok, orphaned children. Writes
bench/results/feedback_kill.json (``--no-write`` prints only).

Only process death is tested: a killed process's committed writes are in the
kernel's page cache and survive it whatever the fsync settings. Power loss is
what ``synchronous=FULL`` is for (``service/lifecycle/feedback_store.py``), and is not
simulated here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, run_facts
from bench.loadgen import process_tree, write_config
from spamgate.service.api.client import SpamGateClient
from spamgate.service.api.launch import start_serve
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.lifecycle.feedback_store import FeedbackStore
from tests.mail import make

LABELS = {pb.FEEDBACK_LABEL_SPAM: "spam", pb.FEEDBACK_LABEL_HAM: "ham"}


class Reporter:
    """Client threads filing reports; ``acked`` holds (sha256, label, reporter) of every acknowledgement."""

    def __init__(self, target: str, round_no: int, threads: int) -> None:
        self.target = target
        self.round_no = round_no
        self.n_threads = threads
        self.acked: list[tuple[str, str, str]] = []
        self.errors: dict[str, int] = {}
        self.first_ack = threading.Event()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def _run(self, k: int) -> None:
        reporter = f"kill-r{self.round_no}-t{k}"
        i = 0
        with SpamGateClient(self.target, timeout=5) as c:
            while not self.stop.is_set():
                i += 1
                label = pb.FEEDBACK_LABEL_SPAM if i % 2 else pb.FEEDBACK_LABEL_HAM
                raw = make(
                    {
                        "Subject": f"report {self.round_no}/{k}/{i}",
                        "Message-ID": f"<fb.{self.round_no}.{k}.{i}@example.org>",
                    }
                )
                try:
                    if k == 0:  # one thread reports by verdict_id, so a slow Classify never stops the rest
                        v = c.classify(raw)
                        req = pb.FeedbackRequest(verdict_id=v.verdict_id, label=label, reporter=reporter)
                    else:
                        req = pb.FeedbackRequest(message=raw, label=label, reporter=reporter)
                    ack = c.stub.ReportFeedback(req, timeout=5)
                except grpc.RpcError as exc:
                    with self._lock:
                        key = exc.code().name
                        self.errors[key] = self.errors.get(key, 0) + 1
                    if self.stop.wait(0.05):
                        return
                    continue
                with self._lock:
                    self.acked.append((ack.message_sha256, LABELS[label], reporter))
                self.first_ack.set()


def check_store(db: Path, acked: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Open the store as a restarted service would; which acknowledged reports are missing."""
    out: dict[str, Any] = {}
    try:
        con = sqlite3.connect(db)
        out["integrity"] = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        store = FeedbackStore(db)
    except sqlite3.Error as exc:
        return {"integrity": f"cannot open: {exc}", "lost": len(acked), "opened": False}
    try:
        lost = []
        for sha, label, reporter in acked:
            if not any(h["label"] == label and h["reporter"] == reporter for h in store.history(sha)):
                lost.append(sha)
        out.update(
            {"opened": True, "lost": len(lost), "lost_sample": lost[:5], "stored_messages": store.count()}
        )
    finally:
        store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--min-seconds", type=float, default=0.2)
    ap.add_argument("--max-seconds", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "feedback_kill.json")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "bench/feedback_kill.py", *(argv if argv is not None else sys.argv[1:])])
    rng = random.Random(args.seed)
    rounds: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory(prefix="spamgate-fbkill-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "feedback.db"
        # Reports over TCP, as gateways send them: allowed explicitly (refused by default, README "Security")
        cfg = write_config(
            tmp / "serve.toml", {"feedback": {"db": str(db)}, "admin": {"anonymous_feedback": True}}
        )
        for r in range(args.rounds):
            delay = rng.uniform(args.min_seconds, args.max_seconds)
            try:
                proc, port = start_serve(["--config", str(cfg)])
            except RuntimeError as exc:
                rounds.append({"round": r + 1, "restart_ok": False, "error": str(exc)})
                break
            t_first = time.monotonic()
            with SpamGateClient(f"127.0.0.1:{port}", timeout=60) as c:
                c.classify(make({"Subject": "first"}))
            first_ms = round((time.monotonic() - t_first) * 1e3)
            rep = Reporter(f"127.0.0.1:{port}", r + 1, args.threads)
            rep.start()
            rep.first_ack.wait(30)
            time.sleep(delay)
            children = [p for p in process_tree(proc.pid) if p != proc.pid]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            rep.join()
            # The scoring workers and the fork server are not killed with their parent; they must
            # notice (their pipes close) and exit on their own.
            deadline = time.monotonic() + 10
            left = children
            while left and time.monotonic() < deadline:
                time.sleep(0.1)
                left = [p for p in left if _alive(p)]
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            check = check_store(db, rep.acked)
            row = {
                "round": r + 1,
                "restart_ok": True,
                "kill_after_s": round(delay, 2),
                "first_classify_ms": first_ms,
                "acknowledged": len(rep.acked),
                "client_errors": rep.errors,
                "children_at_kill": len(children),
                "children_left_after_10s": len(left),
                **check,
            }
            rounds.append(row)
            print(
                f"round {r + 1:2d}: kill after {delay:.2f} s, acknowledged {len(rep.acked)}, "
                f"lost {check['lost']}, first classify {first_ms} ms, integrity {check['integrity']}, "
                f"orphans {len(left)}",
                flush=True,
            )

    acked = sum(x.get("acknowledged", 0) for x in rounds)
    result: dict[str, Any] = {
        **run_facts(command),
        "rounds": len(rounds),
        "restarts_ok": sum(x["restart_ok"] for x in rounds),
        "acknowledged": acked,
        "lost": sum(x.get("lost", 0) for x in rounds),
        "integrity_ok": sum(x.get("integrity") == "ok" for x in rounds),
        "orphaned_children": sum(x.get("children_left_after_10s", 0) for x in rounds),
        "first_classify_ms_max": max((x.get("first_classify_ms", 0) for x in rounds), default=0),
        "stored_messages_at_end": rounds[-1].get("stored_messages") if rounds else 0,
        "per_round": rounds,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "per_round"}, indent=2))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out.relative_to(REPO)}")
    ok = (
        result["lost"] == 0 and result["restarts_ok"] == args.rounds and result["integrity_ok"] == len(rounds)
    )
    return 0 if ok else 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


if __name__ == "__main__":
    raise SystemExit(main())
