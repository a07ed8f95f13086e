"""The policy's interface: Decision/Reason shapes, review vs warn, configured rules, cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

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


# ---------------------------------------------------------------------------- configuration
def _policy(rules, **traits) -> Policy:
    c = Config()
    c.Policy.rules = rules
    for k, v in traits.items():
        setattr(c.Policy, k, v)
    return Policy(config=c)


def test_a_deployment_forces_deny_for_a_rule():
    p = _policy([{"rule": "table.drop", "action": "deny"}])
    d = p.check_sql("DROP TABLE customers")
    assert (d.action, d.rules) == ("deny", ("table.drop",))
    # deny stays deny where review is impossible; other rules keep their default
    assert p.check_sql("TRUNCATE t").action == "warn"


def test_rules_narrow_by_table_and_database_and_the_first_match_wins():
    p = _policy(
        [
            {"rule": "statement.where-required", "tables": ["scratch_*"], "action": "allow"},
            {"rule": "statement.*", "database": r"prod", "action": "deny"},
        ],
        review_possible=True,
    )
    assert p.check_sql("DELETE FROM scratch_runs").action == "allow"
    assert p.check_sql("DELETE FROM analytics.scratch_runs").action == "allow"
    assert p.check_sql("DELETE FROM customers").action == "review"
    assert p.check_sql("DELETE FROM customers", database="postgresql://db.prod/x").action == "deny"
    # the scratch exemption comes first, whatever the database
    assert p.check_sql("DELETE FROM scratch_x", database="prod").action == "allow"


def test_a_rule_of_the_deployments_own_with_regex_and_statement_type():
    p = _policy(
        [
            {
                "id": "acme.no-pii-inserts",
                "statement_type": "INSERT",
                "tables": ["pii.*"],
                "action": "review",
                "min_approvals": 2,
                "message": "writes to the PII schema need two approvals",
            },
            {"id": "acme.no-sleep", "regex": r"(?i)pg_sleep", "action": "deny"},
        ],
        review_possible=True,
    )
    d = p.check_sql("INSERT INTO pii.people VALUES (1)")
    assert d.to_json() == {
        "decision": "review",
        "reasons": [
            {
                "rule": "acme.no-pii-inserts",
                "message": "writes to the PII schema need two approvals",
                "action": "review",
                "tables": ["pii.people"],
            }
        ],
        "min_approvals": 2,
    }
    assert p.check_sql("INSERT INTO public.people VALUES (1)").action == "allow"
    assert p.check_sql("SELECT pg_sleep(10); DROP TABLE x").action == "deny"


def test_exempt_groups_allow_their_members_only():
    p = _policy(
        [{"rule": "table.truncate", "action": "review", "exempt_groups": ["dba"]}],
        review_possible=True,
    )
    assert p.check_sql("TRUNCATE staging", groups=["analysts", "dba"]).action == "allow"
    assert p.check_sql("TRUNCATE staging", groups=["analysts"]).action == "review"
    assert p.check_sql("TRUNCATE staging").action == "review"


def test_forced_review_stays_review_without_reviewers_and_min_approvals_default():
    p = _policy([{"rule": "table.drop", "action": "review", "force": True}], min_approvals=2)
    assert p.check_sql("DROP TABLE t").to_json()["decision"] == "review"
    assert p.check_sql("DROP TABLE t").min_approvals == 2
    assert p.check_sql("TRUNCATE t").action == "warn"


def test_default_action_deny():
    p = _policy([], default_action="deny", review_possible=True)
    assert p.check_sql("DROP TABLE t").action == "deny"
    assert p.check_sql("SELECT 1").action == "allow"


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"rule": "table.drop", "action": "maybe"}, "action must be one of"),
        ({"rule": "table.drop"}, "action must be one of"),
        ({"action": "deny"}, "either 'rule'"),
        ({"rule": "x.y", "id": "a.b", "action": "deny"}, "either 'rule'"),
        ({"id": "NoDots", "action": "deny"}, "id must look like"),
        ({"rule": "table.drop", "action": "deny", "tabels": ["x"]}, "unknown key"),
        ({"id": "a.b", "regex": "(", "action": "deny"}, "not a valid regular expression"),
        ({"rule": "table.drop", "action": "review", "min_approvals": 0}, "min_approvals"),
        ({"rule": "table.drop", "action": "deny", "tables": "x", "kind": "ftp"}, "kind must be"),
        ({"rule": "table.drop", "action": "deny", "exempt_groups": [1]}, "list of strings"),
        ("DROP", "a rule is a dict"),
    ],
)
def test_bad_rules_are_refused_with_a_message_naming_the_rule(rule, error):
    with pytest.raises(TraitError, match=error) as info:
        _policy([{"rule": "table.*", "action": "warn"}, rule])
    assert "policy rule #2" in str(info.value)


def test_changing_rules_at_run_time_drops_cached_decisions():
    p = Policy(review_possible=True)
    assert p.check_sql("DROP TABLE t").action == "review"
    p.rules = [{"rule": "table.drop", "action": "deny"}]
    assert p.check_sql("DROP TABLE t").action == "deny"
    p.review_possible = False
    assert p.check_sql("TRUNCATE t").action == "warn"


def test_cached_decisions_are_the_same_object_and_keyed_by_groups_and_database():
    p = _policy([{"rule": "*", "action": "allow", "exempt_groups": [], "database": "^dev$"}])
    a = p.check_sql("DROP TABLE t")
    assert p.check_sql("DROP TABLE t") is a
    assert p.check_sql("DROP TABLE t", database="dev").action == "allow"
    assert p.check_sql("DROP TABLE t", groups=["x"]) is not a


def test_checks_from_many_threads_agree():
    p = Policy(review_possible=True, cache_size=8)
    statements = [f"DELETE FROM t{i}" for i in range(40)] + [f"SELECT {i}" for i in range(40)]
    results: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work():
        for s in statements:
            d = p.check_sql(s)
            with lock:
                results.append((s, d.action))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 * len(statements)
    assert all((a == "review") == s.startswith("DELETE") for s, a in results)


# ---------------------------------------------------------------------------- shell and HTTP
@pytest.mark.parametrize(
    ("command", "rules"),
    [
        ("rm -rf /data/customers", ["shell.rm-recursive"]),
        ("rm -r -f build", ["shell.rm-recursive"]),
        ("sudo rm --recursive /srv", ["shell.rm-recursive"]),
        ("cd /tmp && rm -fr x", ["shell.rm-recursive"]),
        ("find . -name '*.csv' -delete", ["shell.rm-recursive"]),
        ("bash -c 'rm -rf /data'", ["shell.rm-recursive"]),
        ("echo $(rm -rf /data)", ["shell.rm-recursive"]),
        ("psql -c 'DROP TABLE customers' prod", ["table.drop"]),
        ('psql --command="DELETE FROM customers" prod', ["statement.where-required"]),
        ("PGPASSWORD=x psql -h db -c 'TRUNCATE t'", ["table.truncate"]),
        ("sqlite3 app.db 'DELETE FROM customers'", ["statement.where-required"]),
        ("duckdb trail.db -c 'DROP TABLE x'", ["table.drop"]),
        ("mysql -e 'DROP DATABASE prod'", ["schema.drop"]),
        ("psql -f cleanup.sql prod", ["shell.sql-hidden"]),
        ("psql prod < cleanup.sql", ["shell.sql-hidden"]),
        ("aws s3 rm s3://bucket/data --recursive", ["cloud.delete"]),
        ("aws s3 rb s3://bucket --force", ["cloud.delete"]),
        ("aws ec2 terminate-instances --instance-ids i-1", ["cloud.delete"]),
        ("aws dynamodb delete-table --table-name t", ["cloud.delete"]),
        ("gcloud compute instances delete vm-1 --quiet", ["cloud.delete"]),
        ("gsutil -m rm -r gs://bucket/x", ["cloud.delete"]),
        ("az group delete --name rg --yes", ["cloud.delete"]),
        ("kubectl delete namespace prod", ["kubernetes.delete"]),
        ("helm uninstall api", ["kubernetes.delete"]),
        ("terraform destroy -auto-approve", ["cloud.delete"]),
        ("ls -la; rm -rf x; kubectl delete pod p", ["shell.rm-recursive", "kubernetes.delete"]),
        ("rm -rf 'unclosed", ["shell.rm-recursive"]),
        ("\\rm -rf /data", ["shell.rm-recursive"]),
        ("r''m -rf /data", ["shell.rm-recursive"]),
        ("/bin/rm -rf /data", ["shell.rm-recursive"]),
        ("env -i nohup rm -rf /data &", ["shell.rm-recursive"]),
        ("eval 'rm -rf /data'", ["shell.rm-recursive"]),
        ("ls | xargs rm -rf", ["shell.rm-recursive"]),
    ],
)
def test_risky_shell_commands(command, rules):
    d = Policy(review_possible=True).check_shell(command)
    assert d.action == "review", d.to_json()
    assert sorted(set(d.rules)) == sorted(rules)


@pytest.mark.parametrize(
    "command",
    [
        "ls -la",
        "rm old.csv",
        "echo 'rm -rf /'",
        "grep -r delete .",
        "psql -c 'SELECT count(*) FROM customers' prod",
        "psql --version",
        "sqlite3 app.db 'SELECT 1'",
        "aws s3 ls s3://bucket",
        "aws s3 cp x s3://bucket/x",
        "gcloud compute instances list",
        "kubectl get pods",
        "pip install pandas",
        "# rm -rf /",
        "",
    ],
)
def test_harmless_shell_commands(command):
    assert Policy(review_possible=True).check_shell(command).action == "allow"


def test_shell_and_http_rules_of_the_deployments_own():
    p = _policy(
        [
            {"id": "acme.prod-api-delete", "method": ["DELETE", "PUT"], "host": "*.prod.acme.com",
             "action": "review"},
            {"id": "acme.no-curl-upload", "program": "curl", "regex": r"(-d|--data|-T)\b",
             "action": "deny"},
            {"rule": "shell.rm-recursive", "regex": r"/tmp/", "action": "allow"},
        ],
        review_possible=True,
    )  # fmt: skip
    assert p.check_http("delete", "https://api.prod.acme.com/v1/users/7").action == "review"
    assert p.check_http("GET", "https://api.prod.acme.com/v1/users/7").action == "allow"
    assert p.check_http("DELETE", "https://api.staging.acme.com/x").action == "allow"
    assert p.check_http("DELETE", "http://[::1").action == "allow"  # a bad URL: no host
    assert p.check_shell("curl -d @data.json https://x").action == "deny"
    assert p.check_shell("curl https://x").action == "allow"
    assert p.check_shell("rm -rf /tmp/scratch").action == "allow"
    assert p.check_shell("rm -rf /data").action == "review"


def test_no_http_rule_by_default():
    assert (
        Policy(review_possible=True).check_http("DELETE", "https://api.example.com/x").action
        == "allow"
    )


def test_the_configuration_example_in_docs_policy_md_works():
    text = (Path(__file__).resolve().parents[1] / "docs" / "policy.md").read_text("utf-8")
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    c = Config()
    exec(block, {"c": c})  # noqa: S102 - our own documentation
    p = Policy(config=c, review_possible=True)
    assert p.check_sql("DELETE FROM scratch_a").action == "allow"
    assert p.check_sql("TRUNCATE t", groups=["dba"]).action == "allow"
    assert p.check_sql("DROP TABLE t", database="postgresql://prod-db/x").action == "deny"
    assert p.check_sql("UPDATE pii.people SET a = 1 WHERE id = 2").min_approvals == 2
    assert p.check_http("DELETE", "https://api.prod.acme.com/x").action == "review"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.prod.acme.com./v1/users/7",  # absolute name: the same host
        "https://api\u3002prod\u3002acme\u3002com/v1/users/7",  # httpx maps 。 to .
        "https://\uff41pi.prod.acme.com/v1/users/7",  # full-width a
        "https://API.PROD.ACME.COM../x",
    ],
)
def test_http_host_rules_see_the_host_the_client_reaches(url):
    """Review of issue 14: a host rule is not dodged by spelling the host another way."""
    policy = Policy(
        review_possible=True,
        rules=[{"id": "acme.prod-api-delete", "method": ["DELETE"], "host": "*.prod.acme.com",
                "action": "review"}],
    )  # fmt: skip
    assert policy.check_http("DELETE", url).action == "review"


@pytest.mark.parametrize(
    "command",
    [
        "for d in /data; do rm -rf $d; done",
        "while true; do rm -rf /data; done",
        "if true; then rm -rf /data; fi",
        "if true; then psql -c 'DROP TABLE t'; fi",
        "coproc rm -rf /data",
        "rm --rec /data",  # GNU getopt: an unambiguous prefix of --recursive
        "rm --r /data",
        "find /data -execdir rm {} ;",
        "find /data -ok /bin/rm {} ;",
        "busybox rm -rf /data",
    ],
)
def test_shell_rules_see_through_compound_commands_and_option_prefixes(command):
    """Review of issue 14: these delete /data in bash and were allowed."""
    assert Policy(review_possible=True).check_shell(command).action == "review"
