"""The gRPC edge: the servicer, the client, the one protobuf conversion, and who may call what."""
