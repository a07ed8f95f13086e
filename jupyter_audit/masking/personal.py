"""Personal data known by its label: dates of birth.

A date is personal data only by what it is: ``dob = "1985-03-12"``, ``birth_date: 12/03/1985``,
``WHERE date_of_birth = '1985-03-12'``, ``born 12 March 1985``. The date after such a label
is masked (ISO, day/month/year with ``/``, ``.`` or ``-``, and written months); the label
stays. Other dates (timestamps, signup dates) are left alone. This module must never mask a
date that no birth label names.
"""

from __future__ import annotations

from .base import PatternRecognizer, TextHas

DOB = "DOB"

_MONTHS = rb"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    rb"[12][0-9]{3}-[01]?[0-9]-[0-3]?[0-9]"  # 1985-03-12
    rb"|[0-3]?[0-9][/.-][01]?[0-9][/.-](?:[12][0-9]{3}|[0-9]{2})"  # 12/03/1985, 12.03.85
    rb"|[12][0-9]{3}/[01]?[0-9]/[0-3]?[0-9]"  # 1985/03/12
    rb"|[0-3]?[0-9](?:st|nd|rd|th)?[ \t]+" + _MONTHS + rb",?[ \t]+[12][0-9]{3}"  # 12 March 1985
    rb"|" + _MONTHS + rb"[ \t]+[0-3]?[0-9](?:st|nd|rd|th)?,?[ \t]+[12][0-9]{3}"  # March 12, 1985
)
# the label, found from its needle: "dob", "d.o.b", "born", or "birth" (which is where
# "date_of_birth" / "date of birth" are anchored: "date" alone is in too many texts)
_LABEL = (
    rb"(?<![a-z])(?:dob|d\.o\.b\.?|born(?:[ \t]+on)?)(?![a-z0-9])"
    rb"|birth(?:(?<=date_of_birth)|(?<=date of birth)|(?<=dateofbirth)|(?<=date-of-birth)"
    rb"|(?<![a-z]birth)(?:[_ -]?date|day))(?![a-z0-9])"
)

#: a date right after a birth label (the separator may be "=", ":", a comparison, a quote)
DATE_OF_BIRTH = PatternRecognizer(
    DOB,
    rb"(?:"
    + _LABEL
    + rb")[\"'\]]*[ \t]*(?:[:=<>!]=?|==|=>|->|\bis\b|\bbetween\b)?[ \t]*(?:date[ \t]*)?[\"'(]?"
    + rb"("
    + _DATE
    + rb")(?![0-9])",
    group=1,
    on="low",
    needles=("dob", "d.o.b", "birth", "born"),
    haystack="low",
    anchored=True,
    screen=TextHas(digits=True),  # a date has digits
    priority=55,
    name="date-of-birth",
)
