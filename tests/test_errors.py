"""One error tree (issue 18.3): every error class is a ``SpamgateError`` under one category, and the
category alone decides a command's exit code (``model.exit_codes``) and a call's gRPC status
(``service.api.status_codes``)."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from spamgate.model.artifact import Artifact, ArtifactError
from spamgate.model.errors import ConfigurationError, DataError, ErrorKind, ServiceError, SpamgateError
from spamgate.model.exit_codes import EX_CONFIG, EX_TEMPFAIL, FAILURE, exit_code
from spamgate.model.signing import KeyFileError
from spamgate.service.api.access import Refused
from spamgate.service.api.status_codes import status_code
from spamgate.service.cli import mta_commands
from spamgate.service.cli.main import main
from spamgate.service.lifecycle.feedback_store import StoreFull
from spamgate.service.lifecycle.model_registry import RegistryError
from spamgate.service.policy.settings import PolicyError
from spamgate.service.runtime.config import ConfigError
from spamgate.service.scoring.model_holder import NoModelError
from spamgate.service.scoring.pool import DeadlinePassed, ScoringAborted, ScoringBusy
from spamgate.service.scoring.verdict import RequestError
from spamgate.training.corpora import CorpusError
from tests.mail import make

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = (ConfigurationError, DataError, ServiceError)
BAD_POLICY = 'sensitivity = "paranoid"\n'
CHECK = [sys.executable, "-m", "spamgate.service.cli", "check"]


def _error_classes() -> list[type[BaseException]]:
    """Every exception class defined in model, training and service (imported module by module)."""
    found: list[type[BaseException]] = []
    for package in ("spamgate.model", "spamgate.training", "spamgate.service"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            try:
                module = importlib.import_module(info.name)
            except ModuleNotFoundError as exc:  # an optional dependency (pymilter), not ours
                assert exc.name and not exc.name.startswith("spamgate."), exc
                continue
            found.extend(
                c
                for c in vars(module).values()
                if inspect.isclass(c) and issubclass(c, BaseException) and c.__module__ == module.__name__
            )
    return found


def test_every_error_class_is_a_spamgate_error_under_one_category() -> None:
    classes = _error_classes()
    assert len(classes) >= 20, classes  # the walk found the package's errors, not nothing
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, SpamgateError)]
    assert not outside, f"not under SpamgateError: {outside}"
    for c in classes:
        if c in (SpamgateError, *CATEGORIES):
            continue
        assert sum(issubclass(c, cat) for cat in CATEGORIES) == 1, c


def test_every_service_error_kind_has_a_status_of_its_name() -> None:
    for kind in ErrorKind:
        assert status_code(RequestError(kind, "x")).name == kind.name
    for c in _error_classes():
        if issubclass(c, ServiceError) and c not in (RequestError, Refused):
            assert status_code(c.__new__(c)).name == c.kind.name, c


@pytest.mark.parametrize(
    ("exc", "code", "status"),
    [
        (ConfigError(["[server] port: bad"]), EX_CONFIG, grpc.StatusCode.FAILED_PRECONDITION),
        (PolicyError(["p.toml:1: bad"]), EX_CONFIG, grpc.StatusCode.FAILED_PRECONDITION),
        (KeyFileError("k.pub: not an Ed25519 public key"), EX_CONFIG, grpc.StatusCode.FAILED_PRECONDITION),
        (ArtifactError("damaged"), FAILURE, grpc.StatusCode.INVALID_ARGUMENT),
        (RegistryError("no such version"), FAILURE, grpc.StatusCode.INVALID_ARGUMENT),
        (CorpusError("no messages"), FAILURE, grpc.StatusCode.INVALID_ARGUMENT),
        (RequestError(ErrorKind.INVALID_ARGUMENT, "empty"), FAILURE, grpc.StatusCode.INVALID_ARGUMENT),
        (NoModelError("no model"), EX_TEMPFAIL, grpc.StatusCode.UNAVAILABLE),
        (ScoringBusy("busy"), EX_TEMPFAIL, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (StoreFull("full"), EX_TEMPFAIL, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DeadlinePassed("late"), EX_TEMPFAIL, grpc.StatusCode.DEADLINE_EXCEEDED),
        (ScoringAborted("CPU_BUDGET", "over"), FAILURE, grpc.StatusCode.INTERNAL),
        (Refused(ErrorKind.PERMISSION_DENIED, "no"), FAILURE, grpc.StatusCode.PERMISSION_DENIED),
        (OSError(2, "No such file"), FAILURE, grpc.StatusCode.INTERNAL),
        (ValueError("a bug"), FAILURE, grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_maps_to_its_exit_code_and_status(
    exc: BaseException, code: int, status: grpc.StatusCode
) -> None:
    assert exit_code(exc) == code
    assert status_code(exc) == status


def test_a_configuration_error_met_while_scoring_never_makes_check_fail_open(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """``check`` told configuration from outage by class: a ``PolicyError`` (a ``ValueError`` then)
    raised by the scoring call went to the fail mode and the message was passed unscanned."""

    def classify(raw: bytes) -> None:
        raise PolicyError(["policy.toml:3: thresholds.tag: must be a number"])

    monkeypatch.setattr(mta_commands, "_prepare", lambda args: classify)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(make())))
    assert main(["check", "--fail-mode", "open"]) == EX_CONFIG
    out, err = capsysbinary.readouterr()
    assert out == b"" and err.startswith(b"spamgate check: configuration error:"), err


def test_a_bad_policy_given_to_check_exits_78_in_either_fail_mode(
    tmp_path: Path, small_model: Artifact
) -> None:
    policy = tmp_path / "bad.toml"
    policy.write_text(BAD_POLICY)
    for mode in ("open", "tempfail"):
        r = subprocess.run(
            [*CHECK, "--model", str(small_model.path), "--policy", str(policy), "--fail-mode", mode],
            cwd=REPO,
            input=make(),
            capture_output=True,
            timeout=120,
        )
        assert r.returncode == EX_CONFIG and r.stdout == b"", (mode, r.returncode, r.stderr)
        assert b"unknown preset 'paranoid'" in r.stderr


def _damaged(small_model: Artifact, tmp_path: Path) -> Path:
    assert small_model.path is not None
    copy = tmp_path / "damaged"
    shutil.copytree(small_model.path, copy)
    (copy / "weights.npz").write_bytes(b"not the weights")
    return copy


def test_one_command_per_category_exits_with_the_mapped_code(
    tmp_path: Path, small_model: Artifact, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(small_model.path)
    bad_policy = tmp_path / "bad.toml"
    bad_policy.write_text(BAD_POLICY)
    message = tmp_path / "m.eml"
    message.write_bytes(make())
    not_a_key = tmp_path / "key.pub"
    not_a_key.write_text("not a PEM key\n")
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    damaged = _damaged(small_model, tmp_path)
    cases = {
        # configuration: 78 (classify and policy check said 2, models verify 2 for a file that is no key)
        "classify, bad policy": (
            ["classify", "--model", model, "--policy", str(bad_policy), str(message)],
            78,
        ),
        "policy check, bad policy": (["policy", "check", str(bad_policy), "--model", model], 78),
        "models verify, no key": (["models", "verify", "--public-key", str(not_a_key), model], 78),
        # data: 2
        "classify, damaged model": (["classify", "--model", str(damaged), str(message)], 2),
        # a refused request: 2 (policy explain let RequestError out as a traceback)
        "policy explain, empty message": (["policy", "explain", "--model", model, str(empty)], 2),
    }
    for case, (argv, code) in cases.items():
        assert main(argv) == code, case
        err = capsys.readouterr().err
        assert err.startswith("spamgate ") and err.count("\n") >= 1 and "Traceback" not in err, (case, err)
