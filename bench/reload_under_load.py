"""Policy and model reloads under a steady load: no call may fail, a bad policy file changes nothing.

    python bench/reload_under_load.py [--rate 50] [--seconds 120] [--baseline-seconds 15]
                                      [--policy-every 0.5] [--switch-every 3]

Starts ``spamgate serve`` (``service.api.launch.start_serve``) serving from a
model registry that holds the bundled model twice, under two version names
(``bundled-a``, ``bundled-b``: the same weights, so verdicts stay comparable),
with a policy file and a feedback store, all in a temporary folder. The load
is ``bench/loadgen.py``'s steady mix (generated, plain and HTML mail, every
100th call a pathological input, every 25th verdict reported as feedback).
After ``--baseline-seconds`` of load alone, for ``--seconds``:

- **policy**: every ``--policy-every`` seconds the policy file is replaced by
  write-then-rename, alternating between two valid policies (``A``: balanced,
  ``B``: aggressive; both block ``spammer@evil.example``), then SIGHUP; a
  quarter-step later ``GetPolicy`` must show the new version (SIGHUP applied)
  and a ``ReloadPolicy`` RPC reloads it again. Every sixth step instead puts a
  bad file in place (empty, whitespace only, cut inside a string, cut inside
  the block list; in turn) and reloads it by SIGHUP or by RPC (in turn): it
  must be refused and the version must not change. A file cut at a line
  boundary, which is valid TOML by itself (it just lacks the block list), is
  tried too and reported apart: nothing in the file says it is incomplete, which
  is why the README asks for write-then-rename.
- **model**: every ``--switch-every`` seconds ``spamgate models activate`` (run
  in process: ``service.cli.main.main``) switches the registry's ACTIVE version to
  the other one; the server follows it (registry watch, 0.5 s, or the next
  SIGHUP). Time until ``GetModelInfo`` reports it is recorded.

Figures: failed calls (any gRPC error on the load or on the admin calls: must
be 0), bad policies accepted (must be 0), policy reloads and model switches
done, latency p50/p99/max without reloads (baseline) and during them, and p99
within 1 s after a model switch. Writes bench/results/reload_under_load.json
(``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, reference_loop_seconds, run_facts
from bench.loadgen import SteadyLoad, percentile, write_config
from spamgate.model.bundled import bundled_model_path
from spamgate.service.api.client import SpamGateClient
from spamgate.service.api.launch import start_serve
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.cli.main import main as spamgate
from spamgate.service.lifecycle.model_registry import ModelRegistry

POLICIES = {
    "A": 'version = "A"\nsensitivity = "balanced"\nblock_action = "DELETE"\n\n'
    '[block]\nsenders = ["spammer@evil.example"]\nsender_domains = ["evil.example"]\n',
    "B": 'version = "B"\nsensitivity = "aggressive"\nblock_action = "DELETE"\n\n'
    '[block]\nsenders = ["spammer@evil.example"]\nsender_domains = ["evil.example"]\n',
}
A = POLICIES["A"]
# Must be refused: nothing, or a file cut where TOML itself can tell.
BAD = {
    "empty": "",
    "whitespace": "\n  \n",
    "cut_in_string": A[: A.index("balanced") + 3],
    "cut_in_block_list": A[: A.index("spammer") + 4],
}
# Valid TOML on its own (a policy without its block list): reported apart.
CUT_AT_LINE = A[: A.index("[block]")]


def replace_file(path: Path, text: str) -> None:
    """Write-then-rename: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def make_registry(root: Path) -> tuple[ModelRegistry, list[str]]:
    """The bundled model twice, as versions ``bundled-a`` and ``bundled-b``."""
    reg = ModelRegistry(root / "models")
    versions = []
    for name in ("bundled-a", "bundled-b"):
        src = root / "src" / name
        shutil.copytree(bundled_model_path(), src)
        manifest = json.loads((src / "manifest.json").read_text())
        manifest["version"] = name  # the manifest's file hashes cover the other files, not itself
        (src / "manifest.json").write_text(json.dumps(manifest, indent=2))
        versions.append(reg.add(src))
    reg.activate(versions[0])
    return reg, versions


class Admin:
    """The reloading side: policy steps and model switches, with what they saw."""

    def __init__(
        self, target: str, pid: int, policy_file: Path, registry: ModelRegistry, versions: list[str]
    ):
        self.client = SpamGateClient(target, timeout=10)
        self.pid = pid
        self.policy_file = policy_file
        self.registry = registry
        self.versions = versions
        self.stop = threading.Event()
        self.failed: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.policy_writes = 0
        self.sighups = 0
        self.sighup_applied = 0
        self.sighup_late: list[float] = []
        self.rpc_reloads = 0
        self.bad: list[dict[str, Any]] = []
        self.switches: list[dict[str, Any]] = []
        self.switch_times: list[float] = []

    def _call(self, name: str, fn: Any) -> Any:
        try:
            return fn()
        except grpc.RpcError as exc:
            self.failed[f"{name}:{exc.code().name}"] += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(f"{name}: {exc.code().name}: {str(exc.details())[:200]}")
            return None

    def policy_version(self) -> str:
        info = self._call("GetPolicy", lambda: self.client.stub.GetPolicy(pb.GetPolicyRequest(), timeout=10))
        return info.version if info is not None else "?"

    def _wait_version(self, label: str, seconds: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            if self.policy_version().startswith(label + "+"):
                return time.monotonic() - t0
            time.sleep(0.01)
        return None

    def _bad_attempt(self, n: int, name: str, text: str) -> None:
        via = "sighup" if n % 2 == 0 else "rpc"
        before = self.policy_version()
        replace_file(self.policy_file, text)
        refused_by_rpc = None
        if via == "sighup":
            os.kill(self.pid, signal.SIGHUP)
            time.sleep(0.25)
        else:
            info = self._call(
                "ReloadPolicy", lambda: self.client.stub.ReloadPolicy(pb.ReloadPolicyRequest(), timeout=10)
            )
            refused_by_rpc = info is not None and not info.reloaded and bool(info.errors)
        after = self.policy_version()
        self.bad.append(
            {
                "file": name,
                "via": via,
                "version_before": before,
                "version_after": after,
                "accepted": after != before,
                **({} if refused_by_rpc is None else {"rpc_said_refused": refused_by_rpc}),
            }
        )

    def policy_loop(self, step: float) -> None:
        k = valid = bad = 0
        bad_items = [*BAD.items(), ("cut_at_line_boundary", CUT_AT_LINE)]
        next_tick = time.monotonic()
        while not self.stop.is_set():
            if k % 6 == 3:
                name, text = bad_items[bad % len(bad_items)]
                self._bad_attempt(bad, name, text)
                bad += 1
            else:
                label = "AB"[valid % 2]
                valid += 1
                replace_file(self.policy_file, POLICIES[label])
                self.policy_writes += 1
                os.kill(self.pid, signal.SIGHUP)
                self.sighups += 1
                took = self._wait_version(label, step / 2)
                if took is not None:
                    self.sighup_applied += 1
                else:
                    self.sighup_late.append(time.monotonic())
                info = self._call(
                    "ReloadPolicy",
                    lambda: self.client.stub.ReloadPolicy(pb.ReloadPolicyRequest(), timeout=10),
                )
                if info is not None and info.reloaded and info.version.startswith(label + "+"):
                    self.rpc_reloads += 1
            k += 1
            next_tick += step
            self.stop.wait(max(0.0, next_tick - time.monotonic()))

    def switch_loop(self, every: float) -> None:
        i = 0
        while not self.stop.wait(every):
            i += 1
            version = self.versions[i % 2]
            t0 = time.monotonic()
            with contextlib.redirect_stdout(io.StringIO()):
                rc = spamgate(["models", "activate", "--registry", str(self.registry.root), version])
            seen = None
            while time.monotonic() - t0 < 10:
                info = self._call("GetModelInfo", lambda: self.client.model_info(timeout=10))
                if info is not None and info.model_version == version:
                    seen = time.monotonic() - t0
                    break
                time.sleep(0.02)
            self.switch_times.append(t0)
            self.switches.append(
                {
                    "to": version,
                    "activate_exit": rc,
                    "served_after_ms": None if seen is None else round(seen * 1e3),
                }
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=120.0, help="with reloads")
    ap.add_argument("--baseline-seconds", type=float, default=15.0, help="load alone, before reloads")
    ap.add_argument("--policy-every", type=float, default=0.5)
    ap.add_argument("--switch-every", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reload_under_load.json")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    command = shlex.join(
        ["python", "bench/reload_under_load.py", *(argv if argv is not None else sys.argv[1:])]
    )
    ref = reference_loop_seconds()
    load_start = round(os.getloadavg()[0], 2)  # this VM's 2 cores are shared

    with tempfile.TemporaryDirectory(prefix="spamgate-reload-") as tmp_name:
        tmp = Path(tmp_name)
        reg, versions = make_registry(tmp)
        policy = tmp / "policy.toml"
        replace_file(policy, POLICIES["A"])
        cfg = write_config(
            tmp / "serve.toml",
            {
                "model": {"registry": str(reg.root)},
                "policy": {"file": str(policy)},
                "feedback": {"db": str(tmp / "feedback.db")},
                # ReloadPolicy is an admin call (the socket); the load's reports stay on TCP
                "admin": {"socket": str(tmp / "admin.sock"), "anonymous_feedback": True},
            },
        )
        proc, port = start_serve(["--config", str(cfg)])
        target = f"127.0.0.1:{port}"
        admin = Admin(f"unix:{tmp / 'admin.sock'}", proc.pid, policy, reg, versions)
        load = SteadyLoad(target, args.rate, args.threads, args.seed)
        try:
            # The scoring workers load the model on their first message: warm them before the baseline.
            warm = SteadyLoad(target, rate=20, threads=2, feedback_every=0, pathological_every=0)
            warm.start()
            time.sleep(3.0)
            warm.stop()
            load.start()
            time.sleep(args.baseline_seconds)
            reload_start = time.monotonic()
            workers = [
                threading.Thread(target=admin.policy_loop, args=(args.policy_every,), daemon=True),
                threading.Thread(target=admin.switch_loop, args=(args.switch_every,), daemon=True),
            ]
            for w in workers:
                w.start()
            time.sleep(args.seconds)
            admin.stop.set()
            for w in workers:
                w.join()
            reload_end = time.monotonic()
            load.stop()
            alive = proc.poll() is None
        finally:
            admin.client.close()
            proc.terminate()
            exit_code = proc.wait(timeout=30)

    st = load.stats
    after_switch = [s for t, s in st.latencies if any(0 <= t - t0 <= 1.0 for t0 in admin.switch_times)]
    must_refuse = [b for b in admin.bad if b["file"] != "cut_at_line_boundary"]
    line_cut = [b for b in admin.bad if b["file"] == "cut_at_line_boundary"]
    result: dict[str, Any] = {
        **run_facts(command),
        "reference_loop_seconds": round(ref, 3),
        "load_average_1min_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "rate_target": args.rate,
        "classify_calls": st.calls,
        "feedback_calls": st.feedback_calls,
        "failed_calls": st.failed + st.feedback_failed + sum(admin.failed.values()),
        "errors": {**dict(st.errors), **{f"admin {k}": v for k, v in admin.failed.items()}},
        "error_samples": st.error_samples + admin.error_samples,
        "policy": {
            "valid_writes_with_sighup": admin.sighups,
            "sighup_applied_within_half_a_step": admin.sighup_applied,
            "sighup_not_seen_in_time": len(admin.sighup_late),
            "reload_rpcs_applied": admin.rpc_reloads,
            "bad_attempts": len(must_refuse),
            "bad_accepted": sum(b["accepted"] for b in must_refuse),
            "bad_accepted_by_file": dict(
                Counter(f"{b['file']} via {b['via']}" for b in must_refuse if b["accepted"])
            ),
            "cut_at_line_boundary_attempts": len(line_cut),
            "cut_at_line_boundary_accepted": sum(b["accepted"] for b in line_cut),
            "verdicts_by_policy_label": dict(Counter(v.split("+")[0] for v in st.policy_versions.elements())),
        },
        "model": {
            "switches": len(admin.switches),
            "switches_served": sum(s["served_after_ms"] is not None for s in admin.switches),
            "served_after_ms_max": max((s["served_after_ms"] or 0 for s in admin.switches), default=0),
            "served_after_ms_p50": percentile([s["served_after_ms"] or 0 for s in admin.switches], 50),
            "verdicts_by_model": {(k or "(not scored)"): n for k, n in st.model_versions.items()},
        },
        "latency_baseline": st.summary(until=reload_start),
        "latency_during_reloads": st.summary(since=reload_start, until=reload_end),
        "latency_within_1s_after_model_switch": {
            "calls": len(after_switch),
            "p99_ms": round(percentile(after_switch, 99) * 1e3, 2),
            "max_ms": round(max(after_switch, default=0.0) * 1e3, 2),
        },
        "limit_verdicts": dict(st.limit_reasons),
        "max_lag_behind_schedule_ms": round(st.max_lag * 1e3, 1),
        "server_alive_at_end": alive,
        "server_exit_code_after_sigterm": exit_code,
        "bad_attempt_log": admin.bad,
        "switch_log": admin.switches,
    }
    brief = {k: v for k, v in result.items() if k not in ("bad_attempt_log", "switch_log")}
    print(json.dumps(brief, indent=2))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out.relative_to(REPO)}")
    ok = result["failed_calls"] == 0 and result["policy"]["bad_accepted"] == 0 and alive
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
