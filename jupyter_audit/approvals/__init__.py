"""Approvals: risky operations held until someone other than the requester decides.

`broker.ApprovalBroker` (requests, decisions, executions, cancellations; state rebuilt from
the trail), `model` (one request and the rules of deciding it), `webhooks` (notifications).
A domain package: no tornado, no handlers (those are `server/approvals.py`).
"""

from .broker import ApprovalBroker, Ask, parse_ask, text_sha256
from .model import Approval, Refused, same_person
from .webhooks import Notifier, Webhook, WebhookConfigError

__all__ = [
    "Approval",
    "ApprovalBroker",
    "Ask",
    "Notifier",
    "Refused",
    "Webhook",
    "WebhookConfigError",
    "parse_ask",
    "same_person",
    "text_sha256",
]
