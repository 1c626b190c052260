"""The harness smoke tests run with the rest of `make test`; `-m "not bench_smoke"` leaves them out."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "bench_smoke: runs the performance harness at a tiny size (about a minute: it starts a "
                   "Prefect API server); checks that it works, never how fast",
    )
