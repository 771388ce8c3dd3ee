import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from live import make_run, start_server  # noqa: E402


@pytest.fixture(scope="session")
def served_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), d_model=64, n_heads=4, n_layers=2)


@pytest.fixture(scope="session")
def server(served_run):
    """The real server for the API tests. Yields its base URL."""
    proc, url = start_server(served_run, "--name", "tiny", "--max-tokens", "100", "--max-concurrent", "12",
                             "--max-body", "20000")
    yield url
    proc.terminate()
    proc.wait(10)
