"""In-process fakes of external services, reachable over real sockets."""
