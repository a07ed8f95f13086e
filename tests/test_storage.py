"""The trail's physical layout: the chain's rows read through one accessor
(`store.chain.chain_rows`) whatever is stored."""

import json
from hashlib import sha256

import duckdb
from helpers.trail import sql_event

from jupyter_audit.store.canonical import GENESIS_HASH
from jupyter_audit.store.chain import chain_rows, leaves


def test_chain_rows_link_and_hash_every_record(make_writer, trail_dir):
    w = make_writer(checkpoint_every=50)
    w.append_many([sql_event(i) for i in range(120)])
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True)
    rows = list(chain_rows(con))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    prev = GENESIS_HASH
    for r in rows:
        assert r.prev_hash == prev == bytes.fromhex(json.loads(r.record)["prev_hash"])
        assert r.hash == sha256(r.prev_hash + r.record).digest()
        assert r.leaf == sha256(b"\x00" + r.record).digest()
        prev = r.hash
    # a range starts from the record before it, or from what its record names
    middle = list(chain_rows(con, 40, 45))
    assert [r.seq for r in middle] == list(range(40, 46))
    assert middle[0].prev_hash == rows[38].hash
    assert leaves(con, 10) == [r.leaf for r in rows[:10]]
    con.close()
