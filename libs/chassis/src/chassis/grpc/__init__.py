"""gRPC plumbing shared by every service: server bootstrap, interceptors, error mapping, clients."""
