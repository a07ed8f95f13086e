"""The collector: one trail for a whole JupyterHub, held by a Hub service out of users' reach.

Single-user servers forward their local chain to it (`server/forwarding.py`); it checks who
is talking with the Hub (`hubauth`), checks each record and each server's chain continuity
(`protocol`, `continuity`: pure, no web), re-records every record through the trail store
with its `origin` (`service`), and serves the forwarding API (`handlers`, `app`). It never
trusts a server id, user name or trace id a request claims; see docs/collector.md.
"""
