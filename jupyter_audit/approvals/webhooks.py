"""Approval notifications: webhooks told of `approval.requested` and `approval.decided`.

Two formats: `json` (the approval as the REST API shows it, signed with HMAC-SHA256 over
the body: header `X-Jupyter-Audit-Signature: sha256=<hex>`) and `slack` (an incoming-webhook
`{"text": ...}`, mrkdwn-escaped). Deliveries run on one background thread, retried with
backoff; a failure is logged with the target's host only (a Slack webhook URL is itself a
secret) and never blocks or undoes a decision. Statements are sent as the trail stores them,
masked. The trail, not these messages, is the state: a receiver that missed one reads the
REST API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import re
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Jupyter-Audit-Signature"
EVENT_HEADER = "X-Jupyter-Audit-Event"
FORMATS = ("json", "slack")


class WebhookConfigError(ValueError):
    """A webhook entry the server cannot use (the message says which and why)."""


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str = "json"
    secret: bytes | None = None

    @property
    def host(self) -> str:
        """What logs may say about the target."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}"

    @classmethod
    def from_config(cls, entry: object) -> Webhook:
        """From `{"url": ..., "format": "json"|"slack", "secret_file": path}`."""
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise WebhookConfigError('each webhook needs {"url": "https://..."}')
        unknown = set(entry) - {"url", "format", "secret_file"}
        if unknown:
            raise WebhookConfigError(f"unknown webhook settings {sorted(unknown)}")
        url, fmt = entry["url"], entry.get("format", "json")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise WebhookConfigError("a webhook url must be http(s)://host/...")
        if fmt not in FORMATS:
            raise WebhookConfigError(f"webhook format must be one of {', '.join(FORMATS)}")
        secret = None
        if entry.get("secret_file"):
            try:
                secret = Path(entry["secret_file"]).read_bytes().strip()
            except OSError as e:
                raise WebhookConfigError(
                    f"webhook secret file {entry['secret_file']}: {e.strerror}"
                ) from None
            if not secret:
                raise WebhookConfigError(f"webhook secret file {entry['secret_file']} is empty")
        elif fmt == "json":
            raise WebhookConfigError("a json webhook needs a secret_file (its HMAC key)")
        return cls(url, fmt, secret)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def mrkdwn(text: object) -> str:
    """Text for Slack's mrkdwn: the three control characters escaped, backticks made
    harmless so a statement cannot close its code block."""
    s = "" if text is None else str(text)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def one_line(text: object) -> str:
    """mrkdwn on one line: a notebook path or reason with a newline cannot add a line that
    reads like another notification (`\n*Approval #12 approved* by …`)."""
    return _LINE_BREAKS.sub(" ", mrkdwn(text))


def slack_text(kind: str, a: dict) -> str:
    rules = ", ".join(a.get("rules") or [])
    where = f" in {one_line(a.get('notebook'))}" if a.get("notebook") else ""
    if kind == "approval.requested":
        head = f"*Approval #{a['id']} requested* by {one_line(a.get('requester'))}{where}"
    else:
        last = (a.get("decisions") or [{}])[-1] if a["state"] in ("approved", "denied") else {}
        by = f" by {one_line(last.get('reviewer'))}" if last.get("reviewer") else ""
        glass = " (break-glass)" if last.get("break_glass") else ""
        head = f"*Approval #{a['id']} {one_line(a['state'])}*{by}{glass}{where}"
        if a.get("reason"):
            head += f": {one_line(a['reason'])}"
    return f"{head}\nrules: {one_line(rules)}\n```{mrkdwn(a.get('statement'))}```"


def payload(hook: Webhook, kind: str, approval: dict) -> tuple[bytes, dict]:
    """The body and headers one webhook receives."""
    if hook.format == "slack":
        body = json.dumps({"text": slack_text(kind, approval)}).encode()
        return body, {"Content-Type": "application/json"}
    doc = {"event": kind, "sent_at": int(time.time()), "approval": approval}
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", EVENT_HEADER: kind}
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign(hook.secret, body)
    return body, headers


class Notifier:
    """Queues notifications and delivers them on a background thread."""

    def __init__(
        self,
        hooks: list[Webhook],
        *,
        attempts: int = 5,
        backoff: float = 1.0,
        timeout: float = 10.0,
        log: logging.Logger | None = None,
    ):
        self.hooks = list(hooks)
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self.log = log or logging.getLogger("jupyter_audit.approvals")
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, kind: str, approval: dict) -> None:
        if not self.hooks:
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="jupyter-audit-webhooks", daemon=True
            )
            self._thread.start()
        self._queue.put((kind, approval))

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            try:
                if item is None:
                    return
                kind, approval = item
                for hook in self.hooks:
                    self._deliver(hook, kind, approval)
            finally:
                self._queue.task_done()

    def _deliver(self, hook: Webhook, kind: str, approval: dict) -> bool:
        body, headers = payload(hook, kind, approval)
        for attempt in range(self.attempts):
            try:
                req = urllib.request.Request(hook.url, body, headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                    resp.read()
                return True
            except Exception as e:  # noqa: BLE001 - retried, then logged
                why = getattr(e, "code", None) or type(e).__name__
                if attempt + 1 == self.attempts:
                    self.log.error(
                        "jupyter-audit: %s for approval #%s not delivered to %s after %d "
                        "attempts (%s)",
                        kind,
                        approval.get("id"),
                        hook.host,
                        self.attempts,
                        why,
                    )
                    return False
                self.log.warning("jupyter-audit: webhook %s failed (%s); retrying", hook.host, why)
                if self._stop.wait(self.backoff * 2**attempt):
                    self.log.error(
                        "jupyter-audit: %s for approval #%s not delivered to %s: the server "
                        "is stopping",
                        kind,
                        approval.get("id"),
                        hook.host,
                    )
                    return False
        return False

    def flush(self) -> None:
        """Wait until everything queued was delivered or given up."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        """Stop after what is being delivered now (queued notifications are dropped: the
        trail holds the state)."""
        self._stop.set()
        self._queue.put(None)
