"""Generated gRPC stubs for spamgate.v1 (``make proto``)."""
