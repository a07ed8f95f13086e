"""Masking as configured (jupyter_audit.masking.config, AuditApp.masking_*): disabled
recognizers, added regex recognizers with validators, allow-lists, the optional Presidio
backend, `jupyter audit mask` reading the server's configuration, and adversarial inputs."""

from __future__ import annotations

import json
import pickle
import sys

import pytest
from helpers.servers import server_config

from jupyter_audit.cli import main as cli_main
from jupyter_audit.masking import MASKED_RE, MaskingEngine, MaskingError
from jupyter_audit.masking.config import configured_engine, recognizer_names

KEY = bytes(range(32))
TEXT = "host 10.20.30.40 called +44 20 7946 0958, mail support@example.com, EMP-123456"


def employee_id_ok(value: str) -> bool:
    """A validator for the tests: the digits of an employee id sum to an even number."""
    return sum(int(c) for c in value if c.isdigit()) % 2 == 0


def test_the_default_configuration_is_the_default_engine():
    assert configured_engine(KEY).mask_text(TEXT) == MaskingEngine(KEY).mask_text(TEXT)


def test_disabled_recognizers_are_left_out_and_unknown_names_refused():
    eng = configured_engine(KEY, disabled=["ipv4", "phone"])
    out = eng.mask_text(TEXT)
    assert "10.20.30.40" in out and "+44 20 7946 0958" in out
    assert "support@example.com" not in out  # the others still run
    with pytest.raises(MaskingError, match="unknown masking recognizers.*'fone'"):
        configured_engine(KEY, disabled=["fone"])
    assert "phone" in recognizer_names() and len(set(recognizer_names())) == len(recognizer_names())


def test_extra_regex_recognizers_with_a_validator_by_dotted_path():
    spec = {
        "name": "employee-id",
        "type": "EMPLOYEE_ID",
        "pattern": r"EMP-(\d{6})",
        "group": 1,
        "validator": "tests.test_masking_config:employee_id_ok",
        "needles": ["EMP-"],
    }
    eng = configured_engine(KEY, extra=[spec])
    assert eng._quick is not None  # needles keep the fast path
    out = eng.mask_text("ids EMP-123457 and EMP-123456")  # digit sums 22 and 21
    assert out == f"ids EMP-{eng.pseudonym('EMPLOYEE_ID', '123457')} and EMP-123456"
    # dotted with a final attribute too
    spec2 = dict(spec, validator="tests.test_masking_config.employee_id_ok")
    assert configured_engine(KEY, extra=[spec2]).mask_text("EMP-123457") != "EMP-123457"
    # without needles the fast path is off and short texts are still found
    bare = configured_engine(KEY, extra=[{"name": "x", "type": "X", "pattern": r"Q\d{4}"}])
    assert bare._quick is None and bare.mask_text("Q1234") == bare.pseudonym("X", "Q1234")
    # engines go to prepare workers pickled
    again = pickle.loads(pickle.dumps(eng))
    assert again.mask_text("EMP-123457") == eng.mask_text("EMP-123457") != "EMP-123457"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "X", "pattern": "a"}, "needs a name"),
        ({"name": "x", "type": "X", "pattern": "("}, "does not compile"),
        ({"name": "x", "type": "bad type!", "pattern": "a"}, "type must be"),
        ({"name": "x", "type": "X", "pattern": "a", "group": 2}, "no group 2"),
        ({"name": "x", "type": "X", "pattern": "a", "validator": "nowhere.fn"}, "cannot import"),
        ({"name": "x", "type": "X", "pattern": "a", "validator": "json"}, "dotted path"),
        ({"name": "x", "type": "X", "pattern": "a", "colour": "red"}, "unknown keys"),
        ({"name": "x", "type": "X", "pattern": "a", "needles": "abc"}, "needles"),
        ({"name": "email", "type": "X", "pattern": "a"}, "name is taken"),
        ("EMP-\\d+", "must be a dict"),
    ],
)
def test_bad_extra_recognizers_are_refused_with_the_entry_named(spec, message):
    with pytest.raises(MaskingError, match=message):
        configured_engine(KEY, extra=[spec])


def test_allow_lists_keep_values_and_only_those():
    eng = configured_engine(
        KEY,
        allow_values=["support@example.com"],
        allow_patterns=[r"10\.20\.\d+\.\d+", r"192\.0\.2\.\d+"],
    )
    out = eng.mask_text(TEXT + " bob@example.com 10.21.0.1 192.0.2.7")
    assert "support@example.com" in out and "10.20.30.40" in out and "192.0.2.7" in out
    assert "bob@example.com" not in out and "10.21.0.1" not in out
    assert "+44 20 7946 0958" not in out
    # a pattern matches the whole value, never a part of it
    partial = configured_engine(KEY, allow_patterns=[r"bob"])
    assert "bob@example.com" not in partial.mask_text("bob@example.com")
    with pytest.raises(MaskingError, match="does not compile"):
        configured_engine(KEY, allow_patterns=["(unclosed"])


def test_an_allow_listed_value_does_not_unmask_a_secret_by_its_name():
    """Allow-listing "hunter2" (say, a placeholder in docs) does not let a password through
    a secret-named dict key."""
    eng = configured_engine(KEY, allow_values=["hunter2"])
    out = eng.mask({"password": "hunter2"})
    assert out == {"password": eng.pseudonym("SECRET", "hunter2")}


# Presidio ----------------------------------------------------------------------------------


def test_without_presidio_nothing_breaks(monkeypatch):
    """Presidio absent: the default engine works and never imports it; asking for the backend
    is a clear error naming the extra."""
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import raises ImportError
    monkeypatch.delitem(sys.modules, "jupyter_audit.masking.presidio", raising=False)
    eng = configured_engine(KEY)
    assert MASKED_RE.search(eng.mask_text(TEXT))
    with pytest.raises(MaskingError, match=r"jupyter-audit\[presidio\]"):
        configured_engine(KEY, presidio=True)


def test_presidio_backend_adds_its_recognizers():
    pytest.importorskip("presidio_analyzer")
    eng = configured_engine(KEY, presidio=True, disabled=["email"])
    assert eng._quick is None  # not screened: every text goes to Presidio
    out = eng.mask_text("mail bob@example.com on 2024-01-15 at https://example.com/docs")
    assert "bob@example.com" not in out  # Presidio's EMAIL_ADDRESS, since ours is disabled
    assert "‹EMAIL_ADDRESS:" in out
    assert "2024-01-15" in out and "https://example.com/docs" in out  # DATE_TIME, URL left
    again = pickle.loads(pickle.dumps(eng))  # prepare workers
    assert again.mask_text("mail bob@example.com") == eng.mask_text("mail bob@example.com")
    with pytest.raises(MaskingError, match="spaCy model"):
        configured_engine(KEY, presidio=True, presidio_spacy_model="no_such_model_xx")


# The CLI and the server read the same configuration ----------------------------------------


def _write_config(directory, section: dict):
    path = directory / "jupyter_server_config.json"
    path.write_text(json.dumps({"AuditApp": section}))
    return path


def test_cli_mask_reads_the_servers_masking_configuration(tmp_path, monkeypatch, capsys):
    key = tmp_path / "masking.key"
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    section = {
        "masking_disabled_recognizers": ["ipv4"],
        "masking_allow_values": ["support@example.com"],
        "masking_key_path": str(key),
    }
    _write_config(config_dir, section)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config_dir))
    assert cli_main(["mask", TEXT]) == 0
    out = capsys.readouterr().out.strip()
    from jupyter_audit.masking import load_or_create_key

    expected = configured_engine(
        load_or_create_key(key), disabled=["ipv4"], allow_values=["support@example.com"]
    ).mask_text(TEXT)
    assert out == expected
    assert "10.20.30.40" in out and "support@example.com" in out and "7946" not in out
    # --config FILE names another file; a bad configuration is one clear line, exit 2
    bad = tmp_path / "bad"
    bad.mkdir()
    path = _write_config(bad, {"masking_disabled_recognizers": ["fone"]})
    assert cli_main(["mask", "--config", str(path), "--key", str(key), "x y"]) == 2
    assert "unknown masking recognizers" in capsys.readouterr().err


class TestServerMaskingConfiguration:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(
            trail_dir / "trail.duckdb",
            masking_disabled_recognizers=["ipv4"],
            masking_allow_values=["support@example.com"],
            masking_extra_recognizers=[
                {"name": "employee-id", "type": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}"}
            ],
        )

    async def test_the_writer_masks_as_configured(self, jp_serverapp):
        [app] = jp_serverapp.extension_manager.extension_apps["jupyter_audit"]
        masker = app.recorder.writer.masker
        out = masker.mask_text(TEXT)
        assert "10.20.30.40" in out and "support@example.com" in out
        assert "EMP-123456" not in out and "7946 0958" not in out


# Adversarial inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "piece",
    [
        "1 ",
        "+1 ",
        "(1) ",
        "1.",
        "12-",
        "a:",
        "1::",
        "ffff:",
        "dob ",
        "ssn: ",
        "mysql -p ",
        "AA 12 ",
        "0" * 7 + " ",
        "secret ",
        "born 1 ",
    ],
)
def test_adversarial_repetitions_mask_completely(piece):
    """A notebook user can put any text in a cell: long repetitions of what the recognizers
    look for are masked in one piece each (pytest-timeout stops a catastrophic backtrack),
    and the result is a fixed point."""
    eng = MaskingEngine(KEY, result_cache_size=0)
    text = piece * 20_000 + " +44 20 7946 0958 078-05-1120"
    out = eng.mask_text(text)
    assert "7946 0958" not in out and "078-05-1120" not in out
    assert eng.mask_text(out) == out


# Key rotation ----------------------------------------------------------------------------------


class TestMaskingKeyRotation:
    """A new masking_key_path is a key rotation: recorded as `masking.key_rotated` naming the
    old and new key ids (never the keys); pseudonyms stored under the old key stay."""

    @pytest.fixture
    def jp_server_config(self, trail_dir):
        from jupyter_audit.cli.demo import seed_demo_trail
        from jupyter_audit.masking import load_or_create_key
        from jupyter_audit.store.signing import SigningKey
        from jupyter_audit.store.writer import Writer

        db = trail_dir / "trail.duckdb"
        seed_demo_trail(str(db))  # under trail_dir/masking.key
        old = MaskingEngine(load_or_create_key(trail_dir / "masking.key"))
        with Writer(db, old, SigningKey.load_or_create(trail_dir / "signing-key.pem")) as w:
            w.append(
                {
                    "kind": "masking.key_rotated",
                    "identity": {"username": "root", "auth_method": "system"},
                    "payload": {"old_key_id": None, "new_key_id": old.key_id},
                }
            )
        self.old = old
        return server_config(db, masking_key_path=str(trail_dir / "rotated.key"))

    async def test_a_new_key_is_recorded_and_old_pseudonyms_stay(self, jp_serverapp, trail_dir):
        from jupyter_audit.masking import load_or_create_key

        [app] = jp_serverapp.extension_manager.extension_apps["jupyter_audit"]
        writer = app.recorder.writer
        new = MaskingEngine(load_or_create_key(trail_dir / "rotated.key"))
        assert writer.masker.key_id == new.key_id != self.old.key_id
        assert writer.latest_payload("masking.key_rotated") == {
            "old_key_id": self.old.key_id,
            "new_key_id": new.key_id,
        }
        rows = writer.cursor().execute("SELECT record FROM events").fetchall()
        records = b"".join(bytes(r[0]) for r in rows)
        old_token = self.old.pseudonym("EMAIL", "jane.doe@example.com")
        assert old_token.encode() in records  # stored under the old key, left as it was
        assert new.pseudonym("EMAIL", "jane.doe@example.com").encode() not in records
        # the key itself is nowhere in the trail
        assert (trail_dir / "rotated.key").read_bytes().hex().encode() not in records


class TestSameKeyIsNotARotation:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(trail_dir / "trail.duckdb")

    async def test_first_start_records_the_key_once(self, jp_serverapp):
        [app] = jp_serverapp.extension_manager.extension_apps["jupyter_audit"]
        writer = app.recorder.writer
        payload = writer.latest_payload("masking.key_rotated")
        assert payload == {"old_key_id": None, "new_key_id": writer.masker.key_id}
        app._record_masking_key(writer, writer.masker.key_id)  # as a restart would
        (n,) = (
            writer.cursor()
            .execute("SELECT count(*) FROM events WHERE kind = 'masking.key_rotated'")
            .fetchone()
        )
        assert n == 1
