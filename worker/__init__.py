"""The service: what a worker process runs, and nothing else (installed as ws_counter.worker)."""
