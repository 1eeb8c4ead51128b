"""Direct SMS, safely: a send ledger (exactly once per idempotency key), bulk sends from rows,
quiet hours in each recipient's local time and E.164 phone numbers. See docs/sms.md.

The layer of this package: it uses the client, ``io`` and the ingest sources, and keeps its
ledger in the sync's state database (``sync.store``); the operators use it.
"""

from .engine import DEFAULTS, OUTCOMES, RowOutcome, SmsError, SmsGuardError, SmsOptions, SmsReport, derive_key, send_sms
from .ledger import LEDGER_TABLE, OUTCOMES_TABLE, Ledger
from .window import next_opening, parse_window

__all__ = ["DEFAULTS", "LEDGER_TABLE", "OUTCOMES", "OUTCOMES_TABLE", "Ledger", "RowOutcome", "SmsError",
           "SmsGuardError", "SmsOptions", "SmsReport", "derive_key", "next_opening", "parse_window", "send_sms"]
