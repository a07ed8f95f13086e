"""Full-text search over the trail's masked content: a token index beside the log.

DuckDB's full-text-search extension is not bundled and cannot be downloaded here, so the
index is a derived table, `search_terms(term, trace_id, seq)`: the distinct lower-case words
(letters, digits, `_`) of each record's searchable fields (`SEARCHED`: code, statement, url,
command, path, notebook name), as the record STORES them, so only masked text is ever
indexed: a pseudonym `‹EMAIL:0123…›` gives the words `email` and `0123…`, never the address.
It is filled after the fact (`catch_up`, one INSERT … SELECT over the records not indexed
yet), on the Writer's thread when it is idle and before a search, never in a commit: the
ingest path pays nothing, and a search after a burst pays for the records since the last
one (measured in docs/benchmarks.md).

A query (`terms`) is up to MAX_WORDS words, AND-ed within one record, the last one matched as a
prefix. This module reads the log and writes only `search_terms` and `search_state`; it
must never import the writer.

A PostgreSQL trail (`pg.search`) keeps the same words of the same fields in another shape:
one row per record, its words a `tsvector` under a GIN index (`search_records`), which
PostgreSQL compresses and matches by prefix natively. Its words are split here
(`record_words`), by the very rule a query's are (`terms`), never by PostgreSQL's parser or
locale; `matching_sql` answers for either trail, so the listings and timelines are one code.
"""

from __future__ import annotations

import re

#: the record fields searched (JSON paths into the canonical record)
SEARCHED = (
    "$.payload.code",
    "$.payload.statement",
    "$.payload.url",
    "$.payload.command",
    "$.payload.path",
    "$.notebook",
)
MAX_WORDS = 8
MAX_QUERY = 1000  # characters of `q`
MAX_TERM = 64  # longer words are not indexed (hashes, blobs): nobody types them
MIN_PREFIX = 2  # a shorter last word is matched whole (one letter would match half the index)
_WORD = re.compile(r"[^\W]+", re.UNICODE)  # letters, digits and `_`, as the index splits

_TEXT = (
    "lower(concat_ws(' ', "
    + ", ".join(f"json_extract_string(r, '{path}')" for path in SEARCHED)
    + "))"
)

# the words of records (first_seq, last_seq], one row per distinct word of each record
INDEX_SQL = f"""
INSERT INTO search_terms (term, trace_id, seq)
SELECT DISTINCT term, trace_id, seq FROM (
    SELECT seq, trace_id,
        unnest(regexp_split_to_array({_TEXT}, '[^\\p{{L}}\\p{{N}}_]+')) AS term
    FROM (SELECT seq, trace_id, decode(record) AS r FROM events
          WHERE seq > ? AND seq <= ? AND trace_id IS NOT NULL)
) WHERE length(term) BETWEEN 1 AND {MAX_TERM}
ORDER BY term, trace_id, seq  -- each chunk's row groups hold few terms: lookups skip the rest
"""

CHUNK = 50_000  # records per transaction when catching up (appends wait meanwhile)


class SearchError(ValueError):
    """A search the index cannot answer (too long, no words): the caller's 400."""


class SearchUnavailable(Exception):
    """A trail that has no search index (a PostgreSQL trail made before it, whose schema
    `jupyter audit pg-setup` has not upgraded): the caller's 400, with this message."""


def words_of(text: str) -> list[str]:
    """The words of `text` as a query and the index split it: lower-cased, then runs of
    letters, digits and `_` (in this order, as the DuckDB index splits: a letter whose lower
    case holds a combining mark, `İ`, splits its word alike on both sides)."""
    return _WORD.findall(text.lower())


def record_words(record: dict) -> list[str]:
    """The distinct words a record's searched fields (SEARCHED) hold, as stored (masked),
    from 1 to MAX_TERM characters, in first-seen order."""
    texts = []
    for path in SEARCHED:
        value: object = record
        for key in path[2:].split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            texts.append(value)
    return [w for w in dict.fromkeys(words_of(" ".join(texts))) if len(w) <= MAX_TERM]


def terms(q: str) -> list[str]:
    """The words of a query, lower case, in order, without repeats (SearchError if none,
    too many or too long)."""
    if len(q) > MAX_QUERY:
        raise SearchError(f"q is longer than {MAX_QUERY} characters")
    words = list(dict.fromkeys(words_of(q)))
    if not words:
        raise SearchError("q has no word to search for (letters or digits)")
    if len(words) > MAX_WORDS:
        raise SearchError(f"q has more than {MAX_WORDS} words")
    return [w[:MAX_TERM] for w in words]


def catch_up(con, max_records: int = CHUNK) -> bool:
    """Index up to `max_records` of the records not indexed yet, in one transaction of its
    own; True when none is left. Run by the Writer's thread (`Writer.index_search`), so it
    never races the appends nor holds a write transaction when the Writer folds the WAL."""
    row = con.execute("SELECT max(indexed_seq) FROM search_state").fetchone()
    done = row[0] or 0
    (last,) = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    if done >= last:
        return True
    upto = min(last, done + max_records)
    con.execute("BEGIN")
    try:
        con.execute(INDEX_SQL, [done, upto])
        con.execute("DELETE FROM search_state")
        con.execute("INSERT INTO search_state VALUES (?)", [upto])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return upto >= last


def _word(term: str, prefix: bool) -> tuple[str, list]:
    """A condition on `term` (a range for a prefix, which row-group statistics can use)."""
    if not prefix or len(term) < MIN_PREFIX or ord(term[-1]) >= 0x10FFFF:
        return "term = ?", [term]
    return "(term >= ? AND term < ?)", [term, term[:-1] + chr(ord(term[-1]) + 1)]


def matching_sql(
    words: list[str], trace_id: str | None = None, dialect: str = "duckdb"
) -> tuple[str, list]:
    """SQL selecting (seq, trace_id) of the records holding every word of `words` (the last
    one as a prefix), within one trace if `trace_id` is given, and its parameters, for a
    trail of `dialect` (a cursor's: "duckdb" or "postgresql", `tsquery_sql`). The
    first word's postings are the rows; each other word is a semi-join on seq (measured on
    2,000,000 records, three words in 500,000 records each: 0.7–0.9 s, against 1.3–2.5 s
    grouping every posting of the three by record, 1.8–2.1 s with INTERSECT)."""
    if dialect == "postgresql":
        return tsquery_sql(words, trace_id)
    conds = [_word(w, i == len(words) - 1) for i, w in enumerate(words)]
    within, wparams = ("trace_id = ? AND ", [trace_id]) if trace_id is not None else ("", [])
    (first, params), rest = conds[0], conds[1:]
    # a prefix may match several words of one record: its rows are made distinct
    distinct = "DISTINCT " if first.startswith("(") else ""
    sql = f"SELECT {distinct}seq, trace_id FROM search_terms WHERE {within}{first}"
    params = wparams + params
    for cond, p in rest:
        sql += f" AND seq IN (SELECT seq FROM search_terms WHERE {within}{cond})"
        params += wparams + p
    return sql, params


def tsquery_sql(words: list[str], trace_id: str | None = None) -> tuple[str, list]:
    """`matching_sql` on a PostgreSQL trail: its `search_records` whose words hold every one
    of `words`, the last as a prefix (`:*`, MIN_PREFIX as on DuckDB), one row per record. The
    tsquery is text cast as such, which PostgreSQL takes as written (no parser, no
    lower-casing); each word is quoted, and only a word `words_of` can give is let in
    (SearchError else). A record whose words outgrow one tsvector has `parts` rows: it
    matches when each word is in one of them, looked for only in its rows that hold one
    of the words (a GIN index of such rows only: a flood of them costs a search little)."""
    each = []
    for i, w in enumerate(words):
        if not isinstance(w, str) or _WORD.fullmatch(w) is None or words_of(w) != [w]:
            raise SearchError("a search word is letters, digits and _ only")
        prefix = i == len(words) - 1 and len(w) >= MIN_PREFIX
        each.append(f"'{w}'" + (":*" if prefix else ""))
    within, wparams = ("r.trace_id = ? AND ", [trace_id]) if trace_id is not None else ("", [])
    sql = (
        f"SELECT r.seq, r.trace_id FROM search_records r WHERE {within}r.words @@ ?::tsquery"
        f" AND r.parts = 1 UNION ALL SELECT r.seq, r.trace_id FROM search_records r"
        f" WHERE {within}r.parts > 1 AND r.words @@ ?::tsquery GROUP BY r.seq, r.trace_id"
        " HAVING " + " AND ".join("bool_or(r.words @@ ?::tsquery)" for _ in each)
    )
    return sql, [*wparams, " & ".join(each), *wparams, " | ".join(each), *each]
