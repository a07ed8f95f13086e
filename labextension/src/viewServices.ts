/**
 * What the panel's React views get from the application besides the model:
 * translations, JupyterLab's syntax highlighter, opening a notebook at a
 * cell, and downloading an evidence bundle. Each may be missing (null) when
 * the application does not provide it; the views then leave the feature out.
 */
import type { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import type { TranslationBundle } from '@jupyterlab/translation';

import type { ExportTarget } from './query';

export interface IViewServices {
  trans: TranslationBundle;
  /** JupyterLab's language registry, for static syntax highlighting. */
  languages: IEditorLanguageRegistry | null;
  /**
   * Open a notebook (server path) and activate the cell with this id (or,
   * without one, the cell with this execution count); says what went wrong.
   */
  openCell:
    | ((
        path: string,
        cell: { id: string | null; executionCount: number | null }
      ) => Promise<void>)
    | null;
  /** Download the evidence bundle of a trace or of filtered traces. */
  download: (target: ExportTarget) => Promise<void>;
}
