"""spamgate's service side: CLI, gRPC server, policy, clients."""
