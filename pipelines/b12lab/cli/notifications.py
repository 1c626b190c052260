"""`b12lab notify`: a failed, crashed or silent night reaches a person through Prefect's own automations.

One command sets up, on the Prefect server the schedule runs on, a `Webhook` block holding the address and
two automations that call it:
- NIGHT_FAILED, reactive: a flow run of the nightly flow entered Failed or Crashed (the webhook's body names
  the flow run and its state's one-line message: the cause, never a patient);
- NIGHT_SILENT, proactive: no flow run of the nightly flow Completed within `silence` (a day and a margin:
  `serve` was stopped, the server's scheduler is down, a night hangs). Prefect's server opens a window of
  `silence` when it loads the automation and after each, fires at the end of a window that saw no Completed
  event, and looks every PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY (5 s by default).
Running it again updates the block and the automations in place (they are found by name), so it is the way
to change the address too. Prefect's server evaluates the automations (its triggers and actions services,
on by default in `prefect server start`): nothing of b12lab needs to be running for an alert to go out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

BLOCK_NAME = "b12lab-night-alerts"
NIGHT_FAILED = "b12lab: a night failed or crashed"
NIGHT_SILENT = "b12lab: no night completed"
# Prefect refuses a `within` under 10 s for a trigger on an absence: the round number of hours above it.
SHORTEST_SILENCE_HOURS = 0.003

# Rendered by Prefect's server (Jinja) when the automation fires: JSON for any webhook receiver.
_FAILED_PAYLOAD = """{
  "text": "b12lab nightly run {{ flow_run.name }} {{ flow_run.state.name }}: {{ flow_run.state.message }}",
  "automation": "{{ automation.name }}",
  "flow": "{{ flow.name }}",
  "flow_run_id": "{{ flow_run.id }}",
  "state": "{{ flow_run.state.name }}"
}"""
_SILENT_PAYLOAD = """{
  "text": "b12lab: no nightly run completed in the last <period>",
  "automation": "{{ automation.name }}",
  "flow": "<flow>"
}"""


@dataclass(frozen=True)
class Notifications:
    block_id: UUID
    automation_ids: dict[str, UUID]


def spoken_period(period: timedelta) -> str:
    """`26 hours`, `90 minutes`, `15 seconds`: the silence as the alert and the automation's description say it."""
    seconds = period.total_seconds()
    for unit, size in (("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{round(seconds / size, 1):g} {unit}"
    return f"{round(seconds):g} seconds"


def _flow_events(flow_name: str) -> dict:
    """The trigger's filter: flow run events whose related flow is `flow_name`."""
    return {"match": {"prefect.resource.id": "prefect.flow-run.*"},
            "match_related": {"prefect.resource.role": "flow", "prefect.resource.name": flow_name}}


def set_up(webhook_url: str, flow_name: str, silence: timedelta) -> Notifications:
    """Create or update the webhook block and both automations on the Prefect API in use (PREFECT_API_URL)."""
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    block_id = Webhook(method="POST", url=webhook_url).save(BLOCK_NAME, overwrite=True)
    period = spoken_period(silence)
    automations = {
        NIGHT_FAILED: AutomationCore(
            name=NIGHT_FAILED,
            description=f"A flow run of {flow_name} failed or crashed: the night published nothing.",
            trigger=EventTrigger(expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                                 posture=Posture.Reactive, threshold=1, within=timedelta(0),
                                 **_flow_events(flow_name)),
            actions=[CallWebhook(block_document_id=block_id, payload=_FAILED_PAYLOAD)]),
        NIGHT_SILENT: AutomationCore(
            name=NIGHT_SILENT,
            description=f"No flow run of {flow_name} completed within {period}.",
            trigger=EventTrigger(expect={"prefect.flow-run.Completed"}, posture=Posture.Proactive,
                                 threshold=1, within=silence, **_flow_events(flow_name)),
            actions=[CallWebhook(block_document_id=block_id,
                                 payload=_SILENT_PAYLOAD.replace("<period>", period).replace("<flow>", flow_name))]),
    }
    ids = {}
    with get_client(sync_client=True) as client:
        for name, automation in automations.items():
            existing = client.read_automations_by_name(name)
            if existing:
                client.update_automation(existing[0].id, automation)
                ids[name] = existing[0].id
                for duplicate in existing[1:]:  # one automation per name, whatever was made by hand
                    client.delete_automation(duplicate.id)
            else:
                ids[name] = client.create_automation(automation)
    return Notifications(block_id=block_id, automation_ids=ids)
