"""Direct SMS from a DAG: ``InstasentSendSmsOperator`` (one message) and
``InstasentSendBulkSmsOperator`` (one per row), both on the send ledger (docs/sms.md).

A thin layer over `airflow_provider_instasent.sms.send_sms`: this module resolves connection ids
(the ledger's database, the source's) and turns held rows into a deferral.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .._airflow_compat import AirflowFailException
from ..sms.engine import DEFAULTS, OutsideWindow, RecipientKind, SmsError, SmsGuardError, SmsReport, send_sms
from .base import InstasentBaseOperator, RowSource, push_counts, sql_hook

if TYPE_CHECKING:
    from airflow.sdk import Context


def _ledger(ledger_conn_id: str | None, ledger_path: str | None, source_hook: Any = None) -> Any:
    """Where the ledger lives: a common-sql connection, else the SQL source's database, else a DuckDB file."""
    if ledger_conn_id:
        return sql_hook(ledger_conn_id)
    if source_hook is not None and not ledger_path:
        return source_hook
    return str(ledger_path)


class InstasentSendSmsOperator(InstasentBaseOperator):
    """Send one direct SMS to an audience contact.

    The contact is named by ``audience_id`` or by ``user_id`` (resolved through the unified
    audience). Needs the ``PROJECT_DIRECT_WRITE`` scope (and ``PROJECT_AUDIENCE_READ`` to
    resolve a user id, ``PROJECT_DIRECT_READ`` for the duplicate check and the lookups).
    ``instasent_conn_id``, ``project``: see ``InstasentBaseOperator``.

    An SMS is not idempotent. The client never retries a send after an ambiguous failure,
    and with ``skip_if_sent=True`` (default) a retried task first looks at the contact's
    direct SMS and does not send the same text (and ``utm_term``) a second time.

    Args:
        text: message body (templated).
        audience_id: the recipient's audience id (templated); or
        user_id: the recipient's ``_user_id``, resolved through the audience (templated).
            Exactly one of ``audience_id``, ``user_id`` and ``phone`` is required.
        sender: sender id, or ``"default"`` for the project's default sender.
        utm_term: optional campaign term (at most 40 characters).
        allow_unicode: allow Unicode (more segments per message).
        skip_if_sent: do not send when an identical direct SMS to the contact already exists
            (without a ledger; with one, the ledger decides).
        phone: the recipient's mobile number instead (templated; E.164, or local with
            ``default_region``): the API resolves it to its audience contact.
        default_region: the region of a phone number written without its international prefix.
        ledger_conn_id: the send ledger in a common-sql connection: with a ledger, the message
            is sent exactly once per ``idempotency_key``, through task retries and crashes
            (docs/sms.md).
        ledger_path: the send ledger in a DuckDB file, instead.
        idempotency_key: the message's key (templated, e.g. ``"order-{{ params.order_id }}-shipped"``);
            without one, derived from the recipient, the text and ``scope``.
        scope: what makes a derived key unique (templated, e.g. ``"{{ ds }}"``).
    """

    template_fields: Sequence[str] = ("text", "audience_id", "user_id", "phone", "utm_term", "sender",
                                      "idempotency_key", "scope", "ledger_path")

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
        phone: str | None = None,
        default_region: str | None = None,
        ledger_conn_id: str | None = None,
        ledger_path: str | None = None,
        idempotency_key: str | None = None,
        scope: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if sum(v is not None for v in (audience_id, user_id, phone)) != 1:
            raise ValueError("pass exactly one of audience_id, user_id or phone")
        if idempotency_key is not None and not (ledger_conn_id or ledger_path):
            raise ValueError("idempotency_key needs a ledger: pass ledger_conn_id= or ledger_path=")
        self.phone = phone
        self.default_region = default_region
        self.ledger_conn_id = ledger_conn_id
        self.ledger_path = ledger_path
        self.idempotency_key = idempotency_key
        self.scope = scope
        self.text = text
        self.audience_id = audience_id
        self.user_id = user_id
        self.sender = sender
        self.utm_term = utm_term
        self.allow_unicode = allow_unicode
        self.skip_if_sent = skip_if_sent

    def execute(self, context: Context) -> dict[str, Any]:
        if self.ledger_conn_id or self.ledger_path:
            return self._execute_with_ledger(context)
        with self.hook.get_conn() as client:
            audience_id = self.audience_id or self.phone
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

    def _execute_with_ledger(self, context: Context) -> dict[str, Any]:
        """One row through the bulk engine: the ledger, the lookup after an unknown outcome."""
        with self.hook.get_conn() as client:
            if self.phone is not None:
                recipient, kind = str(self.phone), "phone"
            elif self.audience_id is not None:
                recipient, kind = str(self.audience_id), "audience_id"
            else:
                recipient, kind = str(client.get_audience_contact_by_user(str(self.user_id))["id"]), "audience_id"
            row = {"recipient": recipient, "text": self.text}
            if self.idempotency_key is not None:
                row["key"] = str(self.idempotency_key)
            report = send_sms(
                client, pa.Table.from_pylist([row]), ledger=_ledger(self.ledger_conn_id, self.ledger_path),
                text_column="text", recipient_column="recipient", recipient_kind=kind,
                key_column="key" if self.idempotency_key is not None else None, scope=str(self.scope or ""),
                default_region=self.default_region, sender=self.sender, utm_term=self.utm_term,
                allow_unicode=self.allow_unicode, logger=self.log)
        outcome = report.outcomes[0]
        if outcome.outcome in ("rejected", "failed"):
            raise (AirflowFailException if outcome.outcome == "rejected" else RuntimeError)(
                f"SMS to {outcome.recipient or recipient} {outcome.outcome}: {outcome.reason}")
        self.log.info("SMS %s to %s: %s", outcome.outcome, outcome.recipient, outcome.reason or outcome.sms_id)
        return {"sms_id": outcome.sms_id, "recipient": outcome.recipient, "sent": outcome.outcome == "sent",
                "outcome": outcome.outcome, "idempotency_key": outcome.key}


class InstasentSendBulkSmsOperator(RowSource, InstasentBaseOperator):
    """Send one direct SMS per row of a SQL query, a Parquet path or a DataFrame, exactly once.

    Exactly one source: ``path`` (+ ``path_conn_id``), ``sql`` + ``sql_conn_id`` (+
    ``sql_parameters``), or ``python_callable`` (returns a DataFrame or an Arrow table).

    The ledger lives in ``ledger_conn_id`` (any common-sql connection); else, for a SQL source,
    in the source's database; else in ``ledger_path``, a DuckDB file. Each row's outcome is
    written back to ``instasent_sms_outcomes`` there.

    Options (defaults: `airflow_provider_instasent.sms.engine.DEFAULTS`): ``text`` (a template,
    ``{column}`` per-row fields; templated by Airflow first) or ``text_column``;
    ``recipient_column`` and ``recipient_kind`` (``"phone"`` or ``"audience_id"``);
    ``default_region``; ``key_column`` or ``scope`` (derived keys); ``sender``, ``utm_term``,
    ``allow_unicode``; ``send_window`` with ``timezone_column`` and ``outside_window``
    (``"defer"``: the task defers on a date-time trigger until the earliest held recipient's
    window opens, then sends what is due; ``"skip"``: held rows are left to the next run);
    ``max_recipients`` (checked before the first send); ``max_per_second``; ``ledger_name``.

    Returns (XCom) the counts of the last run (``SmsReport.to_dict()``), never rows; pushed under
    ``sms_report`` when the run fails. Rows the API refused or whose outcome is unknown fail the
    task (a retry sends the refused ones and looks the unknown ones up first); rejected rows do
    not (they are in the outcomes table with their reason).
    """

    template_fields: Sequence[str] = (
        "text", "path", "sql", "sql_parameters", "op_args", "op_kwargs", "scope", "utm_term", "ledger_path",
        "max_recipients", "project",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "sql_parameters": "json", "op_kwargs": "json"}
    ui_color = "#e8f4d7"
    report_key = "sms_report"

    def __init__(
        self,
        *,
        text: str | None = DEFAULTS["text"],
        text_column: str | None = DEFAULTS["text_column"],
        path: Any = None,
        path_conn_id: str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_parameters: Any = None,
        python_callable: Callable[..., Any] | None = None,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        ledger_conn_id: str | None = None,
        ledger_path: str | None = None,
        recipient_column: str = DEFAULTS["recipient_column"],
        recipient_kind: RecipientKind = DEFAULTS["recipient_kind"],
        default_region: str | None = DEFAULTS["default_region"],
        key_column: str | None = DEFAULTS["key_column"],
        scope: str = DEFAULTS["scope"],
        sender: str = DEFAULTS["sender"],
        utm_term: str | None = DEFAULTS["utm_term"],
        allow_unicode: bool = DEFAULTS["allow_unicode"],
        send_window: tuple[str, str] | None = DEFAULTS["send_window"],
        timezone_column: str | None = DEFAULTS["timezone_column"],
        outside_window: OutsideWindow = DEFAULTS["outside_window"],
        max_recipients: int | None = DEFAULTS["max_recipients"],
        max_per_second: float | None = DEFAULTS["max_per_second"],
        ledger_name: str = DEFAULTS["ledger_name"],
        clock: Callable[[], dt.datetime] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._set_source(path=path, path_conn_id=path_conn_id, sql=sql, sql_conn_id=sql_conn_id,
                         sql_parameters=sql_parameters, python_callable=python_callable, op_args=op_args,
                         op_kwargs=op_kwargs)
        if not ledger_conn_id and sql is None and not ledger_path:
            raise ValueError("where does the send ledger live? pass ledger_conn_id= (a common-sql connection) or "
                             "ledger_path= (a DuckDB file); with a sql= source it defaults to sql_conn_id")
        self.text, self.text_column = text, text_column
        self.ledger_conn_id, self.ledger_path = ledger_conn_id, ledger_path
        self.options: dict[str, Any] = {
            "recipient_column": recipient_column, "recipient_kind": recipient_kind, "default_region": default_region,
            "key_column": key_column, "sender": sender, "allow_unicode": allow_unicode,
            "send_window": tuple(send_window) if send_window else None, "timezone_column": timezone_column,
            "outside_window": outside_window, "max_per_second": max_per_second, "ledger_name": ledger_name,
            "clock": clock,
        }
        self.scope, self.utm_term, self.max_recipients = scope, utm_term, max_recipients
        # checked when the DAG is parsed, not first when the task runs
        from ..sms.engine import SmsOptions

        SmsOptions(text=text, text_column=text_column, **self.options)

    def execute(self, context: Context) -> dict[str, Any]:
        source_hook = sql_hook(str(self.sql_conn_id)) if self.sql is not None else None
        max_recipients = None if self.max_recipients in (None, "") else int(self.max_recipients)
        with self.hook.get_conn() as client:
            try:
                report = send_sms(
                    client, self._source(source_hook), ledger=_ledger(self.ledger_conn_id, self.ledger_path,
                                                                      source_hook),
                    text=self.text, text_column=self.text_column, scope=str(self.scope or ""),
                    utm_term=self.utm_term or None, max_recipients=max_recipients, logger=self.log, **self.options)
            except SmsGuardError as exc:
                self._push(context, exc.report)
                raise AirflowFailException(f"{exc} (not retried: the same input is refused the same way)") from exc
            except SmsError as exc:
                self._push(context, exc.report)
                raise
        self._push(context, report)
        self.log.info("SMS: %s", report.summary())
        if report.failed:
            raise RuntimeError(f"{report.failed} SMS failed (see instasent_sms_outcomes, run {report.run_id}); "
                               "a retry sends the refused ones and looks up the unknown ones before sending")
        if report.held and self.options["outside_window"] == "defer" and report.next_window_at:
            try:
                from airflow.providers.standard.triggers.temporal import DateTimeTrigger
            except ImportError:  # pragma: no cover - an older standard provider
                from airflow.triggers.temporal import DateTimeTrigger  # type: ignore[no-redef]

            moment = dt.datetime.fromisoformat(report.next_window_at.replace("Z", "+00:00"))
            self.log.info("%d SMS held by send_window %s: deferring until %s", report.held,
                          self.options["send_window"], report.next_window_at)
            self.defer(trigger=DateTimeTrigger(moment=moment), method_name="execute_complete")
        return report.to_dict()

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """The window opened: send what is due (the ledger skips what was sent before the deferral)."""
        return self.execute(context)

    def _push(self, context: Any, report: SmsReport | None) -> None:
        if report is not None:
            push_counts(context, self.report_key or "sms_report", report.to_dict())
