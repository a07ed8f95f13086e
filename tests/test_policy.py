"""The policy's interface: Decision/Reason shapes, review vs warn, configured rules, cache."""

from __future__ import annotations

import pytest

from jupyter_audit.policy import REVIEW_HINT, Decision, Policy, Reason


def test_a_delete_without_where_is_review_where_someone_else_can_decide():
    d = Policy(review_possible=True).check_sql("DELETE FROM customers")
    assert d.to_json() == {
        "decision": "review",
        "reasons": [
            {
                "rule": "statement.where-required",
                "message": "DELETE without WHERE on customers",
                "action": "review",
                "tables": ["customers"],
            }
        ],
        "min_approvals": 1,
    }


def test_without_review_it_warns_and_says_how_to_enable_review():
    d = Policy().check_sql("DELETE FROM customers")
    assert d.action == "warn"
    assert d.reasons[0].action == "warn"
    assert REVIEW_HINT in d.reasons[0].message
    assert "c.AuditApp.reviewer_groups" in d.reasons[0].message


def test_a_harmless_select_is_allowed_with_no_reasons():
    assert Policy().check_sql("SELECT * FROM customers WHERE id = 1").to_json() == {
        "decision": "allow",
        "reasons": [],
        "min_approvals": 1,
    }


def test_decision_refuses_an_unknown_action():
    with pytest.raises(ValueError, match="unknown action"):
        Decision("maybe")
    assert Decision("deny", (Reason("table.drop", "m", "deny"),)).rules == ("table.drop",)
