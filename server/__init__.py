"""texbridge engine process: HTTP API, job store, worker, streaming."""
