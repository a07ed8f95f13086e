/**
 * jupyter-audit frontend: registers the "Audit trail" sidebar panel and the
 * command that opens it. The panel only reads the trail through the server's
 * REST API; it never holds keys and never renders trail data as HTML.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { IDocumentManager } from '@jupyterlab/docmanager';
import type { NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { auditTrailIcon } from './icons';
import {
  AuditTrailModel,
  DEFAULT_EVENT_PAGE,
  DEFAULT_TRACE_LIMIT
} from './model';
import { notebookPathProblem } from './notebookPath';
import { AuditTrailPanel, DEFAULT_REFRESH_INTERVAL, PANEL_ID } from './panel';
import { revealText } from './reveal';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- the session watch below uses it at once
import { sessionEndedMessage } from './labels';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- checks the session at once
import { SessionWatch } from './session';

/** Command ids. */
export namespace CommandIDs {
  export const open = 'jupyter-audit:open';
  export const refresh = 'jupyter-audit:refresh';
  export const search = 'jupyter-audit:search';
  export const exportShown = 'jupyter-audit:export';
  export const openTrace = 'jupyter-audit:open-trace';
}

const PLUGIN_ID = 'jupyter-audit:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'A sidebar panel to browse the jupyter-audit trail: traces, who ran what, and the trail integrity.',
  autoStart: true,
  optional: [
    ICommandPalette,
    ILayoutRestorer,
    ISettingRegistry,
    ITranslator,
    IEditorLanguageRegistry,
    IDocumentManager
  ],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null,
    languages: IEditorLanguageRegistry | null,
    docManager: IDocumentManager | null
  ): void => {
    translator = translator ?? nullTranslator;
    const trans = translator.load('jupyter-audit');

    const serverSettings = app.serviceManager.serverSettings;
    // The sign-in session ending while the page is open: a notification with
    // a "Sign in again" action, and the panel's own message.
    const session = new SessionWatch({ serverSettings });
    let notification: string | null = null;
    session.changed.connect((_, end) => {
      if (notification !== null) {
        Notification.dismiss(notification);
        notification = null;
      }
      if (end !== null) {
        notification = Notification.warning(sessionEndedMessage(trans), {
          autoClose: false,
          actions: [
            {
              label: trans.__('Sign in again'),
              caption: trans.__('Sign in, then come back to this page'),
              displayType: 'accent',
              callback: () => window.location.assign(end.signInUrl)
            }
          ]
        });
      }
    });
    session.watchKernels(app.serviceManager.kernels);
    session.watchDialogs(Dialog.tracker);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') {
        void session.check();
      }
    });
    void session.check();

    const model = new AuditTrailModel({ serverSettings, session });
    const openCell = docManager
      ? async (
          path: string,
          cell: { id: string | null; executionCount: number | null }
        ): Promise<void> => {
          // The path is what a kernel recorded: open only a plain relative
          // notebook inside the server's root, never anything else.
          const problem = notebookPathProblem(path);
          if (problem !== null) {
            throw new Error(
              trans.__(
                'Not opening the recorded path %1: %2.',
                revealText(path),
                problem
              )
            );
          }
          try {
            await app.serviceManager.contents.get(path, { content: false });
          } catch {
            throw new Error(
              trans.__('The notebook %1 no longer exists on this server.', path)
            );
          }
          // As a notebook, and without starting a kernel: looking at a cell
          // must not run anything.
          const widget = docManager.openOrReveal(
            path,
            'Notebook',
            undefined,
            undefined,
            { shouldStart: false, autoStartDefault: false }
          ) as NotebookPanel | undefined;
          if (!widget) {
            throw new Error(trans.__('Could not open %1.', path));
          }
          await widget.context.ready;
          await widget.revealed;
          const notebook = widget.content;
          if (!notebook?.widgets) {
            return; // opened, but not as a notebook
          }
          const index = findCell(notebook.widgets, cell.id);
          if (index < 0) {
            throw new Error(
              trans.__(
                'That cell is no longer in %1; the notebook is open.',
                path
              )
            );
          }
          notebook.activeCellIndex = index;
          await notebook.scrollToItem(index, 'center');
          app.shell.activateById(widget.id);
        }
      : null;
    const panel = new AuditTrailPanel({
      model,
      translator,
      languages,
      openCell
    });
    app.shell.add(panel, 'left', { rank: 950 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }

    app.commands.addCommand(CommandIDs.open, {
      label: trans.__('Open audit trail'),
      caption: trans.__('Show the audit trail panel'),
      icon: args => (args.isPalette ? undefined : auditTrailIcon),
      describedBy: { args: { type: 'object', properties: {} } },
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    app.commands.addCommand(CommandIDs.openTrace, {
      label: trans.__('Open a trace in the audit trail'),
      caption: trans.__('Show one trace (by id or unambiguous prefix)'),
      describedBy: {
        args: {
          type: 'object',
          properties: {
            traceId: { type: 'string' },
            at: { type: 'string', enum: ['first', 'last'] }
          },
          required: ['traceId']
        }
      },
      execute: args => {
        app.shell.activateById(panel.id);
        return model.openTrace(
          String(args.traceId),
          args.at === 'last' ? 'last' : 'first'
        );
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: trans.__('Refresh audit trail'),
      caption: trans.__('Reload the traces and the open trace'),
      describedBy: { args: { type: 'object', properties: {} } },
      execute: () => panel.refresh()
    });
    app.commands.addCommand(CommandIDs.search, {
      label: trans.__('Search audit trail'),
      caption: trans.__('Search the traces’ code, queries, URLs and commands'),
      describedBy: { args: { type: 'object', properties: {} } },
      execute: () => {
        app.shell.activateById(panel.id);
        panel.focusSearch();
      }
    });
    app.commands.addCommand(CommandIDs.exportShown, {
      label: trans.__('Export audit evidence bundle'),
      caption: trans.__(
        'Download the evidence bundle of the open trace, or of the traces listed'
      ),
      describedBy: { args: { type: 'object', properties: {} } },
      execute: () => panel.exportShown()
    });
    if (palette) {
      for (const command of [
        CommandIDs.open,
        CommandIDs.search,
        CommandIDs.refresh,
        CommandIDs.exportShown
      ]) {
        palette.addItem({ command, category: trans.__('Audit') });
      }
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = (): void => {
            panel.refreshInterval =
              (settings.get('refreshInterval').composite as number) ??
              DEFAULT_REFRESH_INTERVAL;
            model.traceLimit =
              (settings.get('traceLimit').composite as number) ??
              DEFAULT_TRACE_LIMIT;
            model.eventPageSize =
              (settings.get('eventPageSize').composite as number) ??
              DEFAULT_EVENT_PAGE;
            model.fold =
              (settings.get('foldRepeats').composite as boolean) ?? true;
          };
          apply();
          settings.changed.connect(apply);
          panel.disposed.connect(() => settings.changed.disconnect(apply));
        })
        .catch(reason => {
          console.error('jupyter-audit: failed to load settings', reason);
        });
    }
  }
};

/**
 * The index of the cell with the recorded id (JupyterLab's cell id), or -1.
 * Never guessed from an execution count: a re-run cell could carry it now.
 */
export function findCell(
  cells: ReadonlyArray<{ model: { id: string } }>,
  cellId: string | null
): number {
  return cellId ? cells.findIndex(c => c.model.id === cellId) : -1;
}

export default plugin;
