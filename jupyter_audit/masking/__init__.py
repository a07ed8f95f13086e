"""Masking: PII and secrets become keyed pseudonyms ``‹TYPE:xxxxxxxxxxxxxxxx›`` (server side).

>>> key = load_or_create_key(path)          # 32 random bytes, file mode 0600
>>> engine = MaskingEngine(key)
>>> engine.mask_text("mail bob@example.com")  # 'mail ‹EMAIL:…›'
>>> engine.mask({"password": "hunter2", "sql": "..."})
>>> engine.mask(engine.mask_structure("op.sql", payload))  # values of sensitive columns too

Standard library, and sqlparse's lexer for SQL-aware masking.
"""

from .assignments import is_secret_name
from .base import CARD, EMAIL, IBAN, SECRET, PatternRecognizer, Recognizer, TokenRecognizer
from .engine import MASKED_RE, WITHHELD, MaskingEngine, MaskingError
from .keys import KEY_BYTES, load_or_create_key
from .recognizers import DEFAULT_RECOGNIZERS
from .structured import DEFAULT_SENSITIVE_COLUMNS, DEFAULT_SENSITIVE_KEYS

__all__ = [
    "CARD",
    "DEFAULT_RECOGNIZERS",
    "DEFAULT_SENSITIVE_COLUMNS",
    "DEFAULT_SENSITIVE_KEYS",
    "EMAIL",
    "IBAN",
    "KEY_BYTES",
    "MASKED_RE",
    "SECRET",
    "WITHHELD",
    "MaskingEngine",
    "MaskingError",
    "PatternRecognizer",
    "Recognizer",
    "TokenRecognizer",
    "is_secret_name",
    "load_or_create_key",
]
