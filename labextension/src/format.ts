/**
 * Pure helpers that turn trail records into short display strings. They
 * return plain text only; callers render it through React, which escapes it.
 */
import { revealText } from './reveal';
import type { ITraceEvent } from './tokens';

/** Longest one-line summary kept; the full text stays in the row's tooltip. */
const MAX_SUMMARY = 240;

/** Collapse all whitespace (newlines included) into single spaces. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function truncate(text: string, max = MAX_SUMMARY): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function str(value: unknown): string | null {
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  return null;
}

/**
 * The first non-blank line of a cell's source, split where Python ends a
 * line: `\r\n`, a lone `\r` or `\n`. Hidden characters are shown as markers.
 */
export function firstLine(code: string): string {
  const line = code.split(/\r\n|\r|\n/).find(l => l.trim().length > 0);
  return revealText((line ?? '').trim());
}

/**
 * A one-line summary of an event's payload: a cell's first line of code, a
 * query's statement, `METHOD url → status` for HTTP, a shell command; the
 * kind itself for anything else (or when the expected field is missing, for
 * example because masking withheld it).
 */
export function summarizeEvent(
  event: Pick<ITraceEvent, 'kind' | 'payload'>
): string {
  const payload = event.payload ?? {};
  const kind = event.kind;
  let summary: string | null = null;

  if (kind.startsWith('cell.')) {
    const code = str(payload.code);
    summary = code !== null ? firstLine(code) : null;
  } else if (kind === 'op.sql') {
    summary = str(payload.statement);
  } else if (kind === 'op.http') {
    const method = str(payload.method);
    const url = str(payload.url);
    if (method !== null || url !== null) {
      const status = str(payload.status);
      summary = [method, url].filter(part => part !== null).join(' ');
      summary += ` → ${status ?? '?'}`;
    }
  } else if (kind === 'op.shell') {
    summary = str(payload.command);
  } else if (kind === 'session.renamed') {
    const to = str(payload.to);
    summary = to === null ? null : `${str(payload.from) ?? '?'} → ${to}`;
  } else if (kind === 'file.saved') {
    const path = str(payload.path);
    const sha = str(payload.sha256);
    summary =
      path === null
        ? null
        : sha
          ? `${path} (sha256 ${sha.slice(0, 12)})`
          : path;
  } else if (kind === 'session.environment') {
    const parts = [str(payload.kernelspec), str(payload.python_version)];
    if (Array.isArray(payload.packages)) {
      parts.push(`${payload.packages.length} packages`);
    }
    summary = parts.filter(part => part !== null).join(' · ') || null;
  } else if (kind === 'trail.accessed') {
    const action = str(payload.action);
    summary =
      action === null ? null : `${action} ${str(payload.trace_id) ?? ''}`;
  } else if (
    kind === 'session.started' ||
    kind === 'session.ended' ||
    kind === 'session.interrupted' ||
    kind === 'cell.unreported'
  ) {
    const reason = str(payload.reason);
    summary = reason === null ? null : `${kind} (${reason})`;
  } else if (kind.startsWith('approval.')) {
    summary = [kind, str(payload.decision), str(payload.statement)]
      .filter(part => part !== null)
      .join(' ');
  }

  // Reveal before collapsing whitespace, so a lone CR or U+2028 (which end
  // a line of code) shows as a marker rather than as a space.
  summary = summary === null ? '' : oneLine(revealText(summary));
  return truncate(summary.length > 0 ? summary : kind);
}

/** A timestamp from the server (ISO 8601) in the user's locale and time zone. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return isNaN(date.getTime()) ? iso : dateTimeFormat().format(date);
}

let _dateTimeFormat: Intl.DateTimeFormat | null = null;

/**
 * `toLocaleString()`'s format, built once: `toLocaleString` builds a new
 * formatter on every call, which cost most of the time a 500-step page took
 * to draw.
 */
function dateTimeFormat(): Intl.DateTimeFormat {
  if (_dateTimeFormat === null) {
    _dateTimeFormat = new Intl.DateTimeFormat(undefined, {
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric'
    });
  }
  return _dateTimeFormat;
}

/** Newest first by start time; unparsable times sort last. */
export function newestFirst<T extends { started_at: string }>(items: T[]): T[] {
  const time = (item: T): number => {
    const t = Date.parse(item.started_at);
    return isNaN(t) ? -Infinity : t;
  };
  return [...items].sort((a, b) => {
    const delta = time(b) - time(a);
    return isNaN(delta) ? 0 : delta;
  });
}
