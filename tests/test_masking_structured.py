"""Structure-aware masking (masking/structured/): SQL values given to a sensitive column, HTTP
values under a sensitive key, output tables' sensitive columns; through the real engine and
the Writer's prepare, with the attacks a notebook user could try to slip a value past it."""

import json

import pandas as pd
import pytest

from jupyter_audit.masking import MASKED_RE, MaskingEngine
from jupyter_audit.masking.structured import StructureMasker
from jupyter_audit.masking.structured.names import DEFAULT_SENSITIVE_COLUMNS, SensitiveNames
from jupyter_audit.store.records import prepare

KEY = b"k" * 32


@pytest.fixture(scope="module")
def engine():
    return MaskingEngine(KEY)


def sql(engine, statement, params=None, **extra):
    payload = {"driver": "sqlite3", "statement": statement, "params": params, **extra}
    return engine.mask(engine.mask_structure("op.sql", payload))


def leaks(value, *secrets):
    text = json.dumps(value, ensure_ascii=False)
    return [s for s in secrets if s in text]


# Names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,type_",
    [
        ("email", "EMAIL"),
        ("customer_email", "EMAIL"),
        ('"Email"', "EMAIL"),
        ("`email_address`", "EMAIL"),
        ("[EmailAddress]", "EMAIL"),
        ("c.phone_number", "PHONE"),
        ("phoneNumber", "PHONE"),
        ("mobile", "PHONE"),
        ("ssn", "SSN"),
        ("birth_date", "DOB"),
        ("date_of_birth", "DOB"),
        ("dob", "DOB"),
        ("name", "NAME"),
        ("first_name", "NAME"),
        ("LastName", "NAME"),
        ("customer_name", "NAME"),
        ("full_name", "NAME"),
        ("home_address", "ADDRESS"),
        ("iban", "IBAN"),
        ("card_number", "CARD"),
        ("credit_card", "CARD"),
        ("account", "ACCOUNT"),
        ("account_number", "ACCOUNT"),
        # not the person's value
        ("account_id", None),
        ("customer_id", None),
        ("email_verified", None),
        ("card_type", None),
        ("phone_count", None),
        ("table_name", None),
        ("column_name", None),
        ("product_name", None),
        ("username", None),
        ("id", None),
        ("amount", None),
        ("created_at", None),
    ],
)
def test_sensitive_column_names(name, type_):
    assert SensitiveNames(DEFAULT_SENSITIVE_COLUMNS).type_of(name) == type_


def test_bad_names_are_refused_clearly():
    with pytest.raises(ValueError, match="letter or digit"):
        MaskingEngine(KEY, sensitive_columns=["email", "__"])
    with pytest.raises(TypeError, match="string"):
        MaskingEngine(KEY, sensitive_columns=["email", 3])


# SQL -----------------------------------------------------------------------------------------


def test_literals_compared_with_a_sensitive_column_are_masked(engine):
    out = sql(
        engine,
        "SELECT * FROM customers WHERE last_name = 'Smith' AND first_name LIKE 'Ann%' "
        "AND id = 42 AND status = 'open'",
    )
    st = out["statement"]
    assert leaks(st, "Smith", "Ann%") == []
    assert "id = 42" in st and "status = 'open'" in st  # other columns stay readable
    assert f"last_name = '{engine.pseudonym('NAME', 'Smith')}'" in st


def test_the_same_value_gets_the_same_pseudonym_in_a_literal_and_a_parameter(engine):
    a = sql(engine, "SELECT 1 FROM c WHERE full_name = 'Ann Lee'")
    b = sql(engine, "SELECT 1 FROM c WHERE full_name = ?", ["Ann Lee"])
    assert b["params"] == [engine.pseudonym("NAME", "Ann Lee")]
    assert b["params"][0] in a["statement"]


@pytest.mark.parametrize(
    "statement,params",
    [
        ("SELECT 1 FROM c WHERE name = ? AND id = ?", ["Ann Lee", 7]),  # qmark
        ("SELECT 1 FROM c WHERE id = ?2 AND name = ?1", ["Ann Lee", 7]),  # numbered qmark
        ("SELECT 1 FROM c WHERE id = :2 AND name = :1", ["Ann Lee", 7]),  # numeric
        ("SELECT 1 FROM c WHERE id = $2 AND name = $1", ["Ann Lee", 7]),  # postgres/duckdb
        ("SELECT 1 FROM c WHERE name = %s AND id = %s", ["Ann Lee", 7]),  # format
        ("SELECT 1 FROM c WHERE name = :n AND id = :i", {"n": "Ann Lee", "i": 7}),  # named
        ("SELECT 1 FROM c WHERE name = $n AND id = $i", {"n": "Ann Lee", "i": 7}),
        ("SELECT 1 FROM c WHERE name = %(n)s AND id = %(i)s", {"n": "Ann Lee", "i": 7}),
        ("SELECT 1 FROM c WHERE name = @n AND id = @i", {"n": "Ann Lee", "i": 7}),
    ],
)
def test_every_parameter_style_is_bound_to_its_column(engine, statement, params):
    out = sql(engine, statement, params)
    assert leaks(out, "Ann Lee") == []
    ids = out["params"]["i"] if isinstance(params, dict) else out["params"][params.index(7)]
    assert ids == 7  # the id is not a sensitive column: kept


def test_insert_columns_are_matched_with_values_rows_and_executemany_sets(engine):
    out = sql(
        engine,
        "INSERT INTO customers (id, name, phone, card_number) VALUES "
        "(1, 'Ann Lee', '555 0100', 4111111111111111), (2, lower('BOB RAY'), '555 0199', NULL)",
    )
    assert leaks(out, "Ann Lee", "555 0100", "4111111111111111", "BOB RAY", "555 0199") == []
    assert "VALUES (1, " in out["statement"] and "(2, lower(" in out["statement"]
    many = sql(
        engine,
        "INSERT INTO customers (id, name, phone) VALUES (?, ?, ?)",
        [[1, "Ann Lee", "555 0100"], [2, "Bob Ray", "555 0199"]],
        executemany=True,
    )
    assert leaks(many, "Ann Lee", "555 0100", "Bob Ray", "555 0199") == []
    assert [row[0] for row in many["params"]] == [1, 2]


def test_update_set_in_and_between(engine):
    out = sql(
        engine,
        "UPDATE customers SET full_name = ?, dob = DATE '1990-01-02', tier = 'gold' "
        "WHERE email IN ('a@x.io', ?) AND birth_date BETWEEN '1980-01-01' AND '1990-12-31'",
        ["Ann Lee", "b@x.io"],
    )
    assert leaks(out, "Ann Lee", "1990-01-02", "a@x.io", "b@x.io", "1980-01-01") == []
    assert "tier = 'gold'" in out["statement"]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1 FROM c WHERE c.\"Email\" = 'ann'",  # quoted, qualified
        "SELECT 1 FROM c WHERE `customer_email`='ann'",  # backticks, no spaces
        "SELECT 1 FROM c WHERE lower(email) = lower('ann')",  # under functions
        "SELECT 1 FROM c WHERE 'ann' = email",  # reversed
        "select 1 from c where EMAIL /* why not */ = 'ann'",  # a comment in between
        "SELECT 1 FROM c WHERE email NOT LIKE 'ann'",
        "SELECT 1 FROM c WHERE email = E'ann'",  # string prefix
        "SELECT 1 FROM c WHERE email = $$ann$$",  # dollar quoting
    ],
)
def test_attempts_to_hide_a_value_from_the_sql_reader(engine, statement):
    assert leaks(sql(engine, statement), "ann") == []


def test_an_unreadable_statement_withholds_its_values(engine):
    masker = StructureMasker()
    masker.sql.analyse = lambda statement: 1 / 0  # the reader fails
    out = masker.mask(
        "op.sql",
        {"statement": "SELECT 1 FROM c WHERE name = 'Ann'", "params": ["x"]},
        engine.pseudonym,
    )
    assert MASKED_RE.fullmatch(out["statement"]) and out["statement"].startswith("‹WITHHELD")
    assert out["params"] is None


def test_a_long_statement_is_still_read(engine):
    padding = " OR id = 1" * 3000
    out = sql(engine, "SELECT 1 FROM c WHERE id = 0" + padding + " OR name = 'Ann Lee'")
    assert leaks(out, "Ann Lee") == []


def test_statements_without_values_or_sensitive_names_are_not_read(engine):
    masker = StructureMasker()
    assert not masker.sql.applies("SELECT name FROM customers", None)
    assert not masker.sql.applies("SELECT amount FROM loans WHERE id = ?", [1])
    assert masker.sql.applies("SELECT 1 FROM c WHERE name = ?", ["x"])


def test_masking_is_idempotent(engine):
    once = sql(engine, "SELECT 1 FROM c WHERE name = ? AND phone = '555 0100'", ["Ann"])
    twice = engine.mask(engine.mask_structure("op.sql", once))
    assert twice == once


def test_configured_columns_replace_or_add_to_the_defaults():
    replaced = MaskingEngine(KEY, sensitive_columns=["nickname"])
    out = sql(replaced, "SELECT 1 FROM c WHERE nickname = 'Zed' AND name = 'Ann'")
    assert leaks(out, "Zed") == [] and "'Ann'" in out["statement"]
    added = MaskingEngine(KEY, sensitive_columns=[*DEFAULT_SENSITIVE_COLUMNS, "nickname"])
    out = sql(added, "SELECT 1 FROM c WHERE nickname = 'Zed' AND name = 'Ann'")
    assert leaks(out, "Zed", "'Ann'") == []
    assert MASKED_RE.search(out["statement"]).group().startswith("‹NICKNAME:")


def test_the_writer_masks_structure_before_it_stores(engine):
    p = prepare(
        {
            "kind": "op.sql",
            "payload": {
                "driver": "sqlite3",
                "statement": "SELECT * FROM c WHERE name = ?",
                "params": ["Ann Lee"],
            },
        },
        engine,
        1 << 20,
    )
    assert "Ann Lee" not in json.dumps(p.payload)


# SQL in a cell's code -------------------------------------------------------------------


CODE = """import sqlite3  # don't panic: a quote in a comment
con.execute("SELECT * FROM c WHERE last_name = 'Leewright' AND id = 3")
cur.execute("UPDATE c SET phone = ?, full_name = ? WHERE id = ?", ("555 0100", 'Ann Lee', 7))
cur.execute(\"\"\"INSERT INTO c (name, email)
   VALUES (:n, :e)\"\"\", {"n": "Bob Ray", "e": "b@x.io"})
cur.executemany("INSERT INTO c (id, name) VALUES (?, ?)", [(1, "Zed Quark"), (2, 'Al Bo')])
q = f"SELECT 1 FROM c WHERE name = '{who}'"
"""


@pytest.mark.parametrize("kind", ["cell.requested", "cell.started", "cell.finished"])
def test_sql_values_written_in_a_cells_code_are_masked(engine, kind):
    payload = {"code": CODE, "status": "ok"}
    out = engine.mask(engine.mask_structure(kind, payload))["code"]
    assert leaks(out, "Leewright", "555 0100", "Ann Lee", "Bob Ray", "Zed Quark", "Al Bo") == []
    assert "id = 3" in out and ", 7))" in out and "(1, " in out
    # the same pseudonym as the statement's own event
    op = sql(
        engine, "UPDATE c SET phone = ?, full_name = ? WHERE id = ?", ["555 0100", "Ann Lee", 7]
    )
    assert op["params"][1] in out


HIDDEN_IN_CODE = [
    r"""cur.execute("SELECT 1 FROM c WHERE name = 'Ann Lee' -- \n")""",  # an escape
    r"""cur.execute("SELECT 1 FROM c WHERE name = 'Ann \"Lee'")""",  # an escaped quote
    r"""cur.execute(f"SELECT 1 FROM c WHERE name = 'Ann Lee{''}'")""",  # an f-string field
    "cur.execute('''\n  select 1 from c\n where full_name='Ann Lee' ''')",  # triple quotes
    r"""cur.execute(r"UPDATE c SET phone = '555 0100'")""",  # a raw string
]


@pytest.mark.parametrize("code", HIDDEN_IN_CODE)
def test_attempts_to_hide_a_value_in_the_cells_code(engine, code):
    out = engine.mask(engine.mask_structure("cell.requested", {"code": code}))["code"]
    assert leaks(out, "Lee", "555 0100") == []


def test_code_without_sql_is_left_alone(engine):
    code = 'name = "Ann Lee"\nprint(f"hello {name}")\n'
    masker = StructureMasker()
    assert masker.mask("cell.requested", {"code": code}, engine.pseudonym)["code"] == code


# Tables ----------------------------------------------------------------------------------


CUSTOMERS = pd.DataFrame(
    {
        "id": [1, 2],
        "name": ["Ann Lee", "Bob Ray"],
        "email": ["ann@example.com", "bob@example.com"],
        "phone": ["+1 415 555 0100", "020 7946 0958"],
        "account_id": [10, 20],
    }
)
VALUES = ("Ann Lee", "Bob Ray", "ann@example.com", "+1 415 555 0100", "020 7946 0958")


def finished(engine, text, code="df"):
    payload = {
        "code": code,
        "status": "ok",
        "outputs": [{"output_type": "execute_result", "mime_types": ["text/plain"], "text": text}],
    }
    return engine.mask(engine.mask_structure("cell.finished", payload))["outputs"][0]["text"]


@pytest.mark.parametrize(
    "text",
    [
        repr(CUSTOMERS),
        CUSTOMERS.to_string(index=False),
        CUSTOMERS.set_index("name").to_string(),  # a sensitive index
        CUSTOMERS.to_html(),
        CUSTOMERS.to_json(orient="records"),
        str(CUSTOMERS.to_dict(orient="records")),
    ],
    ids=["repr", "no-index", "index", "html", "json", "dicts"],
)
def test_dataframe_outputs_mask_sensitive_columns(engine, text):
    out = finished(engine, text)
    assert leaks(out, *VALUES) == []
    assert "10" in out and "20" in out  # account_id is kept


def test_a_wide_frame_is_masked_in_every_block(engine):
    wide = pd.DataFrame({**{f"col{i}": ["x" * 12] for i in range(14)}, "name": ["Ann Lee"]})
    with pd.option_context("display.width", 80, "display.max_columns", None):
        text = repr(wide)
    assert "\n\n" in text  # wrapped into blocks
    assert leaks(finished(engine, text), "Ann Lee") == []


def test_printed_rows_of_a_query_in_the_cell_are_masked_by_its_select_list(engine):
    code = (
        'rows = con.execute("SELECT id, c.name, email AS mail, phone FROM customers c").fetchall()\n'
        "print(rows)\nfor r in rows: print(r)"
    )
    rows = [(1, "Ann Lee", "ann@example.com", "+1 415 555 0100"), (2, "O'Neil", None, "x")]
    text = str(rows) + "\n" + "\n".join(map(str, rows))
    out = finished(engine, text, code)
    assert leaks(out, "Ann Lee", "O'Neil", "O\\'Neil", "+1 415 555 0100") == []
    assert out.count("(1, ") == 2 and "None" in out


def test_free_text_is_not_mangled(engine):
    text = "name: the customer table has 2 rows\nall good"
    assert finished(engine, text) == engine.mask_text(text)


def test_html_cells_are_escaped(engine):
    frame = pd.DataFrame({"name": ["<script>alert(1)</script>"]})
    out = finished(engine, frame.to_html())
    assert "<script>" not in out and "&lt;script" not in out


# HTTP ------------------------------------------------------------------------------------


def http(engine, **payload):
    payload = {"method": "POST", "url": "http://api.local/x", **payload}
    return engine.mask(engine.mask_structure("op.http", payload))


def test_query_strings_are_masked_by_key(engine):
    out = http(
        engine,
        url="http://api.local/v1/find?name=Ann+Lee&phone=%2B1%20415&api_key=k3y-v4lue&page=2#top",
    )
    assert leaks(out, "Ann", "Lee", "%2B1", "k3y-v4lue") == []
    assert out["url"].startswith("http://api.local/v1/find?") and "&page=2#top" in out["url"]


def test_json_and_form_bodies_are_masked_by_key(engine):
    body = json.dumps(
        {
            "customer": {"full_name": "Ann Lee", "phones": ["555 0100"], "id": 7},
            "Phone": "555 0199",
            "auth": {"token": "t0ken-value", "password": "hunter2"},
            "items": [{"name": "Ann Lee"}],
        }
    )
    out = http(
        engine,
        request_body=body,
        response_body="name=Ann+Lee&clientSecret=s3cr3t&n=1",
    )
    assert leaks(out, "Ann Lee", "Ann+Lee", "555 0199", "t0ken-value", "hunter2", "s3cr3t") == []
    assert out["response_body"].endswith("&n=1")
    structure = StructureMasker().mask("op.http", {"request_body": body}, engine.pseudonym)
    parsed = json.loads(structure["request_body"])  # still JSON, masked by key
    assert parsed["customer"]["id"] == 7 and MASKED_RE.fullmatch(parsed["customer"]["phones"][0])


def test_a_body_that_is_not_json_is_left_to_the_recognizers(engine):
    out = http(engine, request_body='{"name": "Ann Lee", truncated…')
    assert out["request_body"] == engine.mask_text('{"name": "Ann Lee", truncated…')


def test_configured_keys():
    e = MaskingEngine(KEY, sensitive_keys=["member"])
    out = http(e, url="http://h/?member=Zed&name=Ann")
    assert leaks(out, "Zed") == [] and "name=Ann" in out["url"]


def test_engine_pickles_for_prepare_workers(engine):
    import pickle

    clone = pickle.loads(pickle.dumps(engine))
    a = sql(clone, "SELECT 1 FROM c WHERE name = ?", ["Ann"])
    assert a == sql(engine, "SELECT 1 FROM c WHERE name = ?", ["Ann"])
