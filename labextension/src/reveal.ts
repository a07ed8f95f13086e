/**
 * The one place the panel makes text from a record safe to read: every
 * character that draws nothing, moves other text or ends a line without
 * looking like it is shown as a visible `⟦U+XXXX⟧` marker. The list matches
 * the CLI's (jupyter_audit/cli/terminal.py `_CONTROL` and `INVISIBLE`).
 */

/**
 * C0 controls except tab and newline (a CR is handled on its own), DEL and
 * C1 controls, the Arabic letter mark, zero-width characters and direction
 * marks, line/paragraph separators, bidi embeddings, overrides and isolates,
 * word joiners, the BOM, and characters that draw nothing (soft hyphen,
 * combining grapheme joiner, fillers, Khmer vowels, Mongolian selectors,
 * variation selectors, tag characters).
 *
 * Built from a string: lint forbids control characters and combining marks
 * in a character class, and they are the point of this one (matched one code
 * point at a time, thanks to the `u` flag).
 */
const HIDDEN = new RegExp(
  // eslint-disable-next-line no-misleading-character-class
  '\\r(?!\\n)|[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u00ad\\u034f\\u061c' +
    '\\u115f\\u1160\\u17b4\\u17b5\\u180b-\\u180f\\u200b-\\u200f\\u2028\\u2029' +
    '\\u202a-\\u202e\\u2060-\\u2069\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0' +
    '\\u{e0000}-\\u{e0fff}]',
  'gu'
);

/** Characters that end a line in Python, SQL or a shell: the marker is followed by one. */
const LINE_ENDS = new Set(['\r', '\u0085', '\u2028', '\u2029']);

/** `U+XXXX` for one character. */
function codePoint(ch: string): string {
  return `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * `text` with every hidden, direction-changing or line-ending control shown
 * as `⟦U+XXXX⟧`; a lone CR, NEL and U+2028/U+2029 are followed by a real line
 * break so the code reads as it runs. Tabs, `\n` and `\r\n` stay as they are.
 */
export function revealText(text: string): string {
  return text.replace(HIDDEN, ch =>
    LINE_ENDS.has(ch) ? `⟦${codePoint(ch)}⟧\n` : `⟦${codePoint(ch)}⟧`
  );
}
