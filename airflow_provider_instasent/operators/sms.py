"""Direct SMS from a DAG: ``InstasentSendSmsOperator``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import InstasentBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class InstasentSendSmsOperator(InstasentBaseOperator):
    """Send one direct SMS to an audience contact.

    The contact is named by ``audience_id`` or by ``user_id`` (resolved through the unified
    audience). Needs the ``PROJECT_DIRECT_WRITE`` scope (and ``PROJECT_AUDIENCE_READ`` to
    resolve a user id, ``PROJECT_DIRECT_READ`` for the duplicate check).

    An SMS is not idempotent. The client never retries a send after an ambiguous failure,
    and with ``skip_if_sent=True`` (default) a retried task first looks at the contact's
    direct SMS and does not send the same text (and ``utm_term``) a second time.

    Args:
        text: message body (templated).
        audience_id: the recipient's audience id (templated); or
        user_id: the recipient's ``_user_id``, resolved through the audience (templated).
            Exactly one of ``audience_id`` and ``user_id`` is required.
        sender: sender id, or ``"default"`` for the project's default sender.
        utm_term: optional campaign term (at most 40 characters).
        allow_unicode: allow Unicode (more segments per message).
        skip_if_sent: do not send when an identical direct SMS to the contact already exists.
        instasent_conn_id: the Instasent connection (see ``InstasentBaseOperator``).
        project: overrides the connection's project.
    """

    template_fields: Sequence[str] = ("text", "audience_id", "user_id", "utm_term", "sender")

    def __init__(
        self,
        *,
        text: str,
        audience_id: str | None = None,
        user_id: str | None = None,
        sender: str = "default",
        utm_term: str | None = None,
        allow_unicode: bool = False,
        skip_if_sent: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (audience_id is None) == (user_id is None):
            raise ValueError("pass exactly one of audience_id or user_id")
        self.text = text
        self.audience_id = audience_id
        self.user_id = user_id
        self.sender = sender
        self.utm_term = utm_term
        self.allow_unicode = allow_unicode
        self.skip_if_sent = skip_if_sent

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hook.get_conn() as client:
            audience_id = self.audience_id
            if audience_id is None:
                audience_id = str(client.get_audience_contact_by_user(str(self.user_id))["id"])
            if self.skip_if_sent:
                for sms in client.list_sms_for_audience(audience_id):
                    if sms.get("text") == self.text and (
                        self.utm_term is None or sms.get("utmTerm") in (None, self.utm_term)
                    ):
                        self.log.info("An identical SMS (id %s) was already sent to %s; not sending again",
                                      sms.get("id"), audience_id)
                        return {"sms_id": sms.get("id"), "audience_id": audience_id, "sent": False}
            sms = client.send_direct_sms(audience_id, self.text, sender=self.sender, utm_term=self.utm_term,
                                         allow_unicode=self.allow_unicode)
            self.log.info("Sent SMS %s to audience contact %s", sms.get("id"), audience_id)
            return {"sms_id": sms.get("id"), "audience_id": audience_id, "sent": True,
                    "status": sms.get("status")}
