"""The generated stubs under the import path they had before ``service.api`` (kept for clients).

Gateway code and scripts written against earlier releases import
``spamgate.service.proto_gen.spamgate_pb2`` / ``spamgate_pb2_grpc``: the peers' benchmark runner
(``shared/peers/lib/spamgate_client.py``) does, and it failed with ImportError after the stubs
moved to ``spamgate.service.api.proto_gen`` (issue 17). The stubs are generated once, there; this
package only makes the same module objects importable by the old name, so there is one copy of
each message class (two copies would register ``spamgate.v1`` twice in protobuf's descriptor pool).
New code imports ``spamgate.service.api.proto_gen`` or the names ``spamgate`` exports.
"""

from __future__ import annotations

import sys

from spamgate.service.api.proto_gen import spamgate_pb2, spamgate_pb2_grpc

sys.modules[f"{__name__}.spamgate_pb2"] = spamgate_pb2
sys.modules[f"{__name__}.spamgate_pb2_grpc"] = spamgate_pb2_grpc

__all__ = ["spamgate_pb2", "spamgate_pb2_grpc"]
