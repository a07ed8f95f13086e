"""docs/admin.md's signing-key rotation, run as written: the old key signs the new one into
the trail, and a verifier who pinned the old public key still finds the trail intact, its
newest checkpoint signed by the new key."""

import json
import re

from helpers.servers import REPO

from jupyter_audit.cli import main as cli_main
from jupyter_audit.cli.demo import seed_demo_trail
from jupyter_audit.store.signing import key_id, load_public


def rotation_snippet() -> str:
    guide = (REPO / "docs" / "admin.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    [snippet] = [b for b in blocks if "rotate_key" in b]
    return snippet


def test_the_documented_signing_key_rotation_keeps_the_trail_verifiable(tmp_path, capsys):
    seed_demo_trail(tmp_path / "trail.duckdb")
    old_pub = tmp_path / "old.pub"
    old_pub.write_bytes((tmp_path / "signing-key.pem.pub").read_bytes())
    exec(rotation_snippet().replace('"/srv/audit"', repr(str(tmp_path))), {})  # noqa: S102
    assert (tmp_path / "signing-key.pem.pub").read_bytes() != old_pub.read_bytes()

    capsys.readouterr()
    db = str(tmp_path / "trail.duckdb")
    assert cli_main(["verify", "--db", db, "--pubkey", str(old_pub), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    new = load_public((tmp_path / "signing-key.pem.pub").read_bytes())
    # the newest checkpoint is the new key's, trusted through the old one's signature
    assert result["checkpoint"]["key_id"] == key_id(new)
