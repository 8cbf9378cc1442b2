"""hotswap data plane: backends, model slots and the KServe V2 HTTP server."""
