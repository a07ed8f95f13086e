"""Run `jupyter audit archive` on a trail and stop for good at one step, saying so on stdout,
for a test to kill -9 there: `python archive_stop.py POINT TRAIL ARCHIVE`. The archiving
itself is the real code; only a pause is added after the step named POINT."""

import sys
import time

from jupyter_audit.store import archive_target, archiver, compact

point, db, where = sys.argv[1:4]


def stop_after(module, name, when, counter=None):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        if when(*args, **kwargs):
            print(f"stopped at {point}", flush=True)
            time.sleep(3600)
        return out

    setattr(module, name, wrapper)


if point in ("segment_written", "manifest_written"):
    suffix = ".parquet" if point == "segment_written" else ".json"

    def put_later(self, name, data, retain_until=None, _real=archive_target.LocalTarget.put):
        _real(self, name, data, retain_until)
        if name.endswith(suffix):
            print(f"stopped at {point}", flush=True)
            time.sleep(3600)

    archive_target.LocalTarget.put = put_later  # type: ignore[method-assign]
elif point == "recorded":
    from jupyter_audit.store.writer import Writer

    real_compact = Writer.compact

    def compact_later(self, keep_after, timeout=None):
        print(f"stopped at {point}", flush=True)
        time.sleep(3600)
        return real_compact(self, keep_after, timeout)

    Writer.compact = compact_later  # type: ignore[method-assign]
elif point == "fresh_written":
    stop_after(compact, "check_fresh", lambda *a, **k: True)

assert archiver  # the module the CLI runs

from jupyter_audit.cli import main  # noqa: E402

sys.exit(main(["archive", "--db", db, "--to", where, "--after", "0d", "--segment-rows", "100"]))
