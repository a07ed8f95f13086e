/**
 * Masked code, statements and commands shown with JupyterLab's own syntax
 * highlighting (the CodeMirror language registry's static highlighter). The
 * highlighter only ever adds text nodes and spans with its own classes; the
 * code is never parsed as HTML.
 */
import * as React from 'react';

import type { IEditorLanguageRegistry } from '@jupyterlab/codemirror';

import { revealText } from './reveal';

/** Languages the trail holds: a cell's code, an SQL statement, a shell command. */
export type CodeLanguage = 'python' | 'sql' | 'shell';

export function HighlightedCode(props: {
  code: string;
  language: CodeLanguage;
  languages: IEditorLanguageRegistry | null;
  className?: string;
}): React.ReactElement {
  const { language, languages } = props;
  // Hidden characters and lone CRs are shown before highlighting: the
  // browser would draw them as nothing while Python or SQL acts on them.
  const code = React.useMemo(() => revealText(props.code), [props.code]);
  const ref = React.useRef<HTMLElement>(null);
  React.useEffect(() => {
    const el = ref.current;
    if (!el) {
      return;
    }
    let current = true;
    el.textContent = code;
    const spec = languages?.findBest(language) ?? null;
    if (languages && spec) {
      const staged = document.createElement('span');
      languages
        .highlight(code, spec, staged)
        .then(() => {
          if (current) {
            el.replaceChildren(...Array.from(staged.childNodes));
          }
        })
        .catch(() => {
          /* the plain text stays */
        });
    }
    return () => {
      current = false;
    };
  }, [code, language, languages]);
  return (
    <pre className={`jp-AuditTrail-code cm-s-jupyter ${props.className ?? ''}`}>
      <code ref={ref} />
    </pre>
  );
}
