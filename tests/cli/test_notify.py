"""`b12lab notify` against a real `prefect server start`: a failed night, and a silence longer than
`--silence-hours`, make Prefect's own automations POST to the webhook, here a receiver on this machine's
loopback."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from b12lab.cli.notifications import spoken_period
from tests.helpers.processes import b12lab


@pytest.fixture
def webhook_receiver():
    """An HTTP server on 127.0.0.1 that keeps every POST it receives: (url, list of (path, body))."""
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):  # keep the test's output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def notifications_removed(prefect_server):
    """The automations this test made are deleted after it: the session's server serves other tests."""
    yield
    for automation in prefect_server.post("/automations/filter", {}):
        if automation["name"].startswith("b12lab:"):
            prefect_server.delete(f"/automations/{automation['id']}")


def wait_for_posts(received: list, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not received and time.monotonic() < deadline:
        time.sleep(0.5)


def test_a_failed_night_is_posted_to_the_webhook(tmp_path, prefect_server, webhook_receiver, notifications_removed):
    url, received = webhook_receiver
    env = {"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": tmp_path / "home"}
    # Set up twice, as an operator changing the address does: one block, one automation of each kind.
    assert b12lab("notify", "--webhook", f"{url}/old", env=env).returncode == 0
    result = b12lab("notify", "--webhook", f"{url}/alerts", env=env)
    assert result.returncode == 0, result.stderr
    assert "automation 'b12lab: a night failed or crashed'" in result.stdout
    automations = prefect_server.post("/automations/filter", {})
    assert sorted(a["name"] for a in automations) == ["b12lab: a night failed or crashed",
                                                      "b12lab: no night completed"]

    # An empty drop folder fails the night (silence is an alarm): its flow run ends Failed.
    (tmp_path / "drop").mkdir()
    run = b12lab("run", "--input", tmp_path / "drop", "--output", tmp_path / "out", env=env)
    assert run.returncode == 1 and "no export files" in run.stderr

    wait_for_posts(received, 90)
    assert received, "no POST reached the webhook within 90 s of the failed run"
    time.sleep(2)  # a second POST (the old address, a duplicate automation) would have come by now
    assert [path for path, _ in received] == ["/alerts"]
    alert = json.loads(received[0][1])
    assert alert["automation"] == "b12lab: a night failed or crashed"
    assert alert["flow"] == "b12lab-nightly" and alert["state"] == "Failed"
    assert "no export files" in alert["text"]
    flow_run = prefect_server.get(f"/flow_runs/{alert['flow_run_id']}")
    assert flow_run["state"]["type"] == "FAILED"


SILENCE_SECONDS = 15


def test_a_silent_night_is_posted_to_the_webhook(tmp_path, prefect_server, webhook_receiver, notifications_removed):
    """No night completes (nothing is served): once the silence has lasted `--silence-hours`, Prefect's server
    POSTs the absence alert, and not before."""
    url, received = webhook_receiver
    env = {"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": tmp_path / "home"}
    result = b12lab("notify", "--webhook", f"{url}/alerts", "--silence-hours", SILENCE_SECONDS / 3600, env=env)
    assert result.returncode == 0, result.stderr
    set_up_at = time.monotonic()
    [silent] = [a for a in prefect_server.post("/automations/filter", {}) if a["name"] == "b12lab: no night completed"]
    assert silent["trigger"]["posture"] == "Proactive" and silent["trigger"]["within"] == SILENCE_SECONDS

    # The server loads the automation, opens a window of SILENCE_SECONDS, and looks every 5 s (its
    # PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY): the alert comes between 15 and about 25 s after set-up.
    wait_for_posts(received, SILENCE_SECONDS + 30)
    assert received, f"no POST reached the webhook within {SILENCE_SECONDS + 30} s of a silence of {SILENCE_SECONDS} s"
    assert time.monotonic() - set_up_at >= SILENCE_SECONDS - 1, "the alert came before the silence had lasted"
    path, body = received[0]
    alert = json.loads(body)
    assert path == "/alerts"
    assert alert == {"text": f"b12lab: no nightly run completed in the last {SILENCE_SECONDS} seconds",
                     "automation": "b12lab: no night completed", "flow": "b12lab-nightly"}


def test_a_silence_is_spoken_in_the_unit_that_fits():
    assert [spoken_period(timedelta(seconds=s)) for s in (15, 90, 26 * 3600, 5400)] == [
        "15 seconds", "1.5 minutes", "26 hours", "1.5 hours"]


def test_notify_needs_an_http_address_and_a_prefect_server(tmp_path):
    refused = b12lab("notify", "--webhook", "mailto:someone@example.org",
                     env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert refused.returncode == 2 and "is not an http(s) address" in refused.stderr
    too_short = b12lab("notify", "--webhook", "http://127.0.0.1:9/hook", "--silence-hours", "0.002",
                       env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})  # 7 s: Prefect refuses under 10
    assert too_short.returncode == 2 and "0.002 is not in the range x>=0.003" in too_short.stderr
    no_server = b12lab("notify", "--webhook", "http://127.0.0.1:9/hook", env={"PREFECT_API_URL": ""})
    assert no_server.returncode == 1
    [line] = no_server.stderr.splitlines()
    assert line.startswith("b12lab: error: PREFECT_API_URL is not set")
