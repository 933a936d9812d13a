"""What GetModelInfo and GetPolicy show a caller without the admin role: no filesystem paths.

Paths tell an outsider how the host is laid out (user names, where the training
mail and the policy live). Removed: ``PolicyInfo.source`` (the policy file),
the manifest's ``training.command`` (the training command line: corpus and data
folders) and, in every other string of the manifest and in the policy's reload
errors, each path (absolute, in a home, relative from ./ or ../, a file: URL) is
cut to its last component (``/etc/spamgate/policy.toml:3: …`` becomes
``policy.toml:3: …``, still enough to find the line). A reload error also loses its details,
which quote the files (a list file's bad line verbatim): ``policy_file.public_error``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.policy.policy_file import public_error

# A POSIX path not inside a word or another URL ("spamgate-model/1", "v1.2/3" and "https://host/x"
# are not paths): absolute, in a home (~/, ~user/), relative from ./ or ../ (a training command's
# "--data ../../home/bob" names a user as surely as "/home/bob"), or a file: URL (file:///p,
# file://host/p, file:/p). ":" ends it, as in "file:line".
_PATH = re.compile(
    r"(?:(?i:\bfile:)(?://[^\s/]*)?"
    r"|(?<![\w.:/~-])(?:~[\w.-]*|\.\.?(?:/\.\.?)*)?)"
    r"/(?:[^\s/:'\",;=]+/)*([^\s/:'\",;=]*)"
)


def scrub_paths(text: str) -> str:
    """``text`` with every path (absolute, ~, ~user, ./, ../, file: URL) replaced by its last component."""
    return _PATH.sub(lambda m: m.group(1), text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_paths(value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def public_manifest_json(manifest_json: str) -> str:
    manifest = json.loads(manifest_json)
    training = manifest.get("training")
    if isinstance(training, dict) and "command" in training:
        training["command"] = ""
    return json.dumps(_scrub(manifest), sort_keys=True)


def public_model_info(info: pb.ModelInfo) -> pb.ModelInfo:
    out = pb.ModelInfo()
    out.CopyFrom(info)
    out.manifest_json = public_manifest_json(info.manifest_json) if info.manifest_json else ""
    out.ClearField("corpora")
    out.corpora.extend(scrub_paths(c) for c in info.corpora)
    return out


def public_policy_info(info: pb.PolicyInfo) -> pb.PolicyInfo:
    out = pb.PolicyInfo()
    out.CopyFrom(info)
    out.source = ""
    out.ClearField("errors")
    out.errors.extend(public_error(scrub_paths(e)) for e in info.errors)
    return out
