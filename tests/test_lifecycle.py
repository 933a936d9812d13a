"""Model lifecycle: signing, registry, shipping over HTTP, hot swap under load, feedback, retrain gate."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from spamgate.model.artifact import Artifact
from spamgate.model.signing import (
    SignatureError,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_artifact,
    verify_artifact,
)
from spamgate.service.api.client import SpamGateClient
from spamgate.service.api.launch import start_serve
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.server import RunningServer, start_server
from spamgate.service.cli.main import main
from spamgate.service.lifecycle.feedback_store import FeedbackStore
from spamgate.service.lifecycle.model_registry import ModelRegistry, RegistryError
from spamgate.service.lifecycle.shipping import ShippingError, publish, pull
from spamgate.service.runtime.config import load_config, with_server
from tests.conftest import train_small, write_corpus
from tests.mail import make

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifact, Artifact]:
    base = tmp_path_factory.mktemp("two")
    a = train_small(base / "a", seed=11, n=120)
    time.sleep(1.1)  # versions are named by creation second
    b = train_small(base / "b", seed=12, n=120)
    assert a.version != b.version
    return a, b


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("keys") / "signing")


def _copy(a: Artifact, dst: Path) -> Path:
    assert a.path is not None
    shutil.copytree(a.path, dst)
    return dst


def test_sign_and_verify_cli(
    tmp_path: Path,
    two_models: tuple[Artifact, Artifact],
    keys: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    priv, pub = keys
    m = _copy(two_models[0], tmp_path / "m")
    assert main(["models", "verify", "--public-key", str(pub), str(m)]) == 2
    assert "unsigned" in capsys.readouterr().err
    assert main(["models", "sign", "--key", str(priv), str(m)]) == 0
    assert main(["models", "verify", "--public-key", str(pub), str(m)]) == 0
    manifest = json.loads((m / "manifest.json").read_text())
    manifest["created"] = "1999-01-01T00:00:00+00:00"
    (m / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["models", "verify", "--public-key", str(pub), str(m)]) == 2
    assert "does not match" in capsys.readouterr().err
    other_priv, _ = generate_keypair(tmp_path / "other")
    m2 = _copy(two_models[0], tmp_path / "m2")
    sign_artifact(m2, load_private_key(other_priv))
    with pytest.raises(SignatureError):
        verify_artifact(m2, load_public_key(pub))
    assert oct((priv).stat().st_mode & 0o777) == "0o600"


def test_registry_activate_rollback_prune(
    tmp_path: Path, two_models: tuple[Artifact, Artifact], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_models
    reg = ModelRegistry(tmp_path / "models")
    assert a.path is not None and b.path is not None
    assert reg.add(a.path) == a.version and reg.add(b.path) == b.version
    assert reg.versions() == sorted([a.version, b.version]) and reg.active() is None
    reg.activate(a.version)
    reg.activate(b.version)
    assert reg.active() == b.version
    assert main(["models", "rollback", "--registry", str(reg.root)]) == 0
    assert reg.active() == a.version
    assert main(["models", "list", "--registry", str(reg.root)]) == 0
    assert f"* {a.version}" in capsys.readouterr().out
    with pytest.raises(RegistryError):
        reg.activate("no-such-version")
    assert reg.prune(keep=1) == []  # the only other version is the active one … kept
    assert a.version in reg.versions()


def test_registry_refuses_unsigned_with_key(
    tmp_path: Path, two_models: tuple[Artifact, Artifact], keys: tuple[Path, Path]
) -> None:
    from spamgate.service.api.server import signature_check

    reg = ModelRegistry(tmp_path / "models", signature_check(str(keys[1])))
    assert two_models[0].path is not None
    with pytest.raises(SignatureError):
        reg.add(two_models[0].path)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/models/"
    httpd.shutdown()


def test_publish_and_pull_over_http(
    tmp_path: Path, http_dir: tuple[Path, str], two_models: tuple[Artifact, Artifact], keys: tuple[Path, Path]
) -> None:
    from spamgate.service.api.server import signature_check

    www, url = http_dir
    priv, pub = keys
    signed = _copy(two_models[0], tmp_path / "signed")
    sign_artifact(signed, load_private_key(priv))
    publish(signed, www / "models", load_private_key(priv))
    gateway = ModelRegistry(tmp_path / "gw", signature_check(str(pub)))
    key = load_public_key(pub)
    assert pull(url, gateway, key).new == [two_models[0].version]
    assert pull(url, gateway, key).new == []  # nothing new
    assert (
        main(
            [
                "models",
                "pull",
                "--from",
                url,
                "--registry",
                str(gateway.root),
                "--public-key",
                str(pub),
                "--activate",
                "auto",
            ]
        )
        == 0
    )
    assert gateway.active() == two_models[0].version
    # an unsigned distribution point is refused by a gateway with a key
    unsigned = _copy(two_models[1], tmp_path / "unsigned")
    publish(unsigned, www / "plain")
    plain = url.replace("/models/", "/plain/")
    with pytest.raises(ShippingError, match="unsigned"):
        pull(plain, gateway, key)
    assert two_models[1].version not in gateway.versions()
    # a tampered weights file is refused by checksum (the index's, before the manifest's)
    tampered = www / "plain" / two_models[1].version / "weights.npz"
    tampered.write_bytes(tampered.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ShippingError, match="sha256"):
        pull(plain, ModelRegistry(tmp_path / "gw2"), allow_unsigned=True)
    assert ModelRegistry(tmp_path / "gw2").versions() == []


def _serve_registry(reg: Path, extra: dict[str, dict[str, object]] | None = None) -> RunningServer:
    over: dict[str, dict[str, object]] = {
        "metrics": {"port": 0},
        "model": {"registry": str(reg), "watch_seconds": 0.1},
    }
    over.update(extra or {})
    cfg = with_server(load_config(None, over), port=0)
    running = start_server(cfg)
    running.engine.holder.load(cfg.model_path)
    return running


def _registry_with(tmp_path: Path, models: tuple[Artifact, ...], activations: list[str]) -> ModelRegistry:
    """A registry holding ``models``, activated in the order given (the last is active)."""
    reg = ModelRegistry(tmp_path / "models")
    for m in models:
        assert m.path is not None
        reg.add(m.path)
    for version in activations:
        reg.activate(version)
    return reg


def test_hot_swap_under_load(tmp_path: Path, two_models: tuple[Artifact, Artifact]) -> None:
    a, b = two_models
    reg = _registry_with(tmp_path, two_models, [a.version])
    running = _serve_registry(reg.root)
    target = f"127.0.0.1:{running.port}"
    stop = threading.Event()
    failures: list[str] = []
    seen: list[str] = []
    lock = threading.Lock()

    def load() -> None:
        with SpamGateClient(target, timeout=10) as c:
            while not stop.is_set():
                try:
                    v = c.classify(make())
                    with lock:
                        seen.append(v.model_version)
                except grpc.RpcError as exc:
                    with lock:
                        failures.append(str(exc.code()))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with SpamGateClient(running.admin_target) as admin:  # ActivateModel: an admin call
            for i in range(20):
                version = b.version if i % 2 == 0 else a.version
                info = admin.stub.ActivateModel(pb.ActivateModelRequest(version=version), timeout=10)
                assert info.model_version == version
                time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
        running.stop(0).wait()
    assert failures == []
    assert len(seen) > 50 and set(seen) == {a.version, b.version}


def test_rollback_takes_effect_within_a_second(tmp_path: Path, two_models: tuple[Artifact, Artifact]) -> None:
    a, b = two_models
    reg = _registry_with(tmp_path, two_models, [a.version, b.version])
    running = _serve_registry(reg.root)
    try:
        with SpamGateClient(f"127.0.0.1:{running.port}") as c:
            assert c.classify(make()).model_version == b.version
            t0 = time.perf_counter()
            assert main(["models", "rollback", "--registry", str(reg.root)]) == 0
            while c.classify(make()).model_version != a.version:
                assert time.perf_counter() - t0 < 1.0, "rollback not in effect after 1 s"
                time.sleep(0.02)
    finally:
        running.stop(0).wait()


def test_service_with_key_refuses_unsigned_version(
    tmp_path: Path, two_models: tuple[Artifact, Artifact], keys: tuple[Path, Path]
) -> None:
    priv, pub = keys
    a, b = two_models
    root = tmp_path / "models"
    root.mkdir()
    sa = _copy(a, root / a.version)
    sign_artifact(sa, load_private_key(priv))
    _copy(b, root / b.version)  # unsigned
    ModelRegistry(root).activate(a.version)
    running = _serve_registry(
        root, {"model": {"registry": str(root), "public_key": str(pub), "watch_seconds": 0.1}}
    )
    try:
        (root / "ACTIVE").write_text(b.version + "\n")  # someone points at the unsigned version
        time.sleep(0.5)
        with SpamGateClient(running.admin_target) as c:
            assert c.classify(make()).model_version == a.version
            with pytest.raises(grpc.RpcError) as e:
                c.stub.ActivateModel(pb.ActivateModelRequest(version=b.version), timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unsigned" in e.value.details()
    finally:
        running.stop(0).wait()


def test_feedback_store_idempotent_and_history(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    raw = make()
    first = store.add(raw, "spam", "alice")
    assert not first.duplicate
    assert store.add(raw, "spam", "alice").duplicate
    store.add(raw, "ham", "admin")
    hist = store.history(first.sha256)
    assert [h["label"] for h in hist] == ["spam", "ham"]
    (msg,) = list(store.labelled())
    assert msg.label == 0 and msg.raw == raw  # the later report wins
    with pytest.raises(ValueError):
        store.add(raw, "maybe")


def test_feedback_survives_kill_9(tmp_path: Path, small_model: Artifact) -> None:
    db = tmp_path / "fb.db"
    proc, port = start_serve(["--config", str(_write_cfg(tmp_path, db)), "--model", str(small_model.path)])
    try:
        # ReportFeedback is refused on TCP by default: reports go to the admin socket
        admin = f"unix:{tmp_path / 'admin.sock'}"
        with SpamGateClient(admin) as c, SpamGateClient(f"127.0.0.1:{port}") as tcp:
            v = tcp.classify(make({"Subject": "by id"}))
            by_id = c.stub.ReportFeedback(
                pb.FeedbackRequest(verdict_id=v.verdict_id, label=pb.FEEDBACK_LABEL_SPAM, reporter="u1"),
                timeout=10,
            )
            acks = [
                c.stub.ReportFeedback(
                    pb.FeedbackRequest(
                        message=make({"Subject": f"m{i}"}), label=pb.FEEDBACK_LABEL_HAM, reporter="u2"
                    ),
                    timeout=10,
                )
                for i in range(5)
            ]
            dup = c.stub.ReportFeedback(
                pb.FeedbackRequest(
                    message=make({"Subject": "m0"}), label=pb.FEEDBACK_LABEL_HAM, reporter="u2"
                ),
                timeout=10,
            )
            assert dup.duplicate and not acks[0].duplicate and by_id.message_sha256 == v.verdict_id
            with pytest.raises(grpc.RpcError) as e:
                c.stub.ReportFeedback(pb.FeedbackRequest(label=pb.FEEDBACK_LABEL_SPAM), timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as e:
                c.stub.ReportFeedback(
                    pb.FeedbackRequest(verdict_id="0" * 64, label=pb.FEEDBACK_LABEL_HAM), timeout=10
                )
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 6
    assert con.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 6


def _write_cfg(tmp: Path, db: Path) -> Path:
    p = tmp / "serve.toml"
    p.write_text(f'[feedback]\ndb = "{db}"\n[admin]\nsocket = "{tmp / "admin.sock"}"\n')
    return p


def test_retrain_gate(
    tmp_path: Path, two_models: tuple[Artifact, Artifact], capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "models"
    assert two_models[0].path is not None
    ModelRegistry(reg).add(two_models[0].path)
    ModelRegistry(reg).activate(two_models[0].version)
    good = write_corpus(tmp_path / "good", 160, seed=21)
    rc = main(
        [
            "retrain",
            "--registry",
            str(reg),
            "--corpus",
            str(good),
            "--jobs",
            "1",
            "--quiet",
            "--roca-tolerance",
            "10",
            "--fpr-tolerance",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "PROMOTED" in out
    promoted = ModelRegistry(reg).active()
    assert promoted != two_models[0].version
    manifest = json.loads((reg / str(promoted) / "manifest.json").read_text())
    assert manifest["gate"]["promote"] and manifest["gate"]["compared_with"]["kind"] == "active"
    # a candidate trained on poisoned (label-flipped) older mail loses on clean recent mail: not promoted
    from spamgate.model.features import FeatureConfig
    from spamgate.model.labelled import LabelledMessage
    from spamgate.training.fit import TrainConfig
    from spamgate.training.retrain import GateConfig, retrain

    active = ModelRegistry(reg).load(str(promoted))
    msgs = []
    for i, (label, raw) in enumerate(__import__("tests.mail").mail.generated_corpus(200, seed=23)):
        y = 1 if label == "spam" else 0
        msgs.append(LabelledMessage(1 - y if i < 140 else y, raw, f"m{i}", float(i)))
    path, decision = retrain(
        msgs,
        active,
        reg,
        FeatureConfig(n_bits=14),
        TrainConfig(cv_folds=3, loss="sgd_log"),
        GateConfig(holdout=0.3),
        [],
        n_jobs=1,
        progress=False,
    )
    assert not decision["promote"] and "1-ROCA%" in decision["why"]
    assert json.loads((path / "manifest.json").read_text())["gate"]["promote"] is False
    assert ModelRegistry(reg).active() == promoted
    # and through the CLI with feedback: the decision is reported, exit code 1 when held back
    fb = FeedbackStore(tmp_path / "fb.db")
    for label, raw in __import__("tests.mail").mail.generated_corpus(60, seed=24):
        fb.add(raw, label, "user")
    fb.close()
    capsys.readouterr()
    rc = main(
        [
            "retrain",
            "--registry",
            str(reg),
            "--feedback",
            str(tmp_path / "fb.db"),
            "--trusted-reporter",  # with no base corpus, only trusted reports can be held back for the gate
            "user",
            "--jobs",
            "1",
            "--quiet",
            "--holdout",
            "0.3",
            "--roca-tolerance",
            "0",
            "--fpr-tolerance",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert rc in (0, 1) and ("PROMOTED" in captured.out), captured.err
    assert (reg / ".reports").is_dir() and list((reg / ".reports").glob("*.png"))


def test_retrain_says_when_a_warm_start_is_ignored(tmp_path: Path) -> None:
    from spamgate.model.features import FeatureConfig
    from spamgate.model.labelled import LabelledMessage
    from spamgate.training.fit import TrainConfig
    from spamgate.training.retrain import GateConfig, retrain

    msgs = [
        LabelledMessage(1 if label == "spam" else 0, raw, f"m{i}", float(i))
        for i, (label, raw) in enumerate(__import__("tests.mail").mail.generated_corpus(80, seed=31))
    ]
    features = FeatureConfig(n_bits=12)
    _, decision = retrain(
        msgs,
        None,
        tmp_path / "svm",
        features,
        TrainConfig(cv_folds=3),
        GateConfig(holdout=0.3),
        [],
        warm_start=True,
        n_jobs=1,
        progress=False,
    )
    assert "solved exactly" in decision["warm_start"]
    _, decision = retrain(
        msgs,
        None,
        tmp_path / "sgd",
        features,
        TrainConfig(cv_folds=3, loss="sgd_log"),
        GateConfig(holdout=0.3),
        [],
        warm_start=True,
        n_jobs=1,
        progress=False,
    )
    assert "no active model" in decision["warm_start"]
