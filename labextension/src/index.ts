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
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { auditTrailIcon } from './icons';
import { AuditTrailModel, DEFAULT_TRACE_LIMIT } from './model';
import { AuditTrailPanel, DEFAULT_REFRESH_INTERVAL, PANEL_ID } from './panel';
import { sessionEndedMessage } from './labels';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- checks the session at once
import { SessionWatch } from './session';

/** Command ids. */
export namespace CommandIDs {
  export const open = 'jupyter-audit:open';
}

const PLUGIN_ID = 'jupyter-audit:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'A sidebar panel to browse the jupyter-audit trail: traces, who ran what, and the trail integrity.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null
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
    const panel = new AuditTrailPanel({ model, translator });
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
    if (palette) {
      palette.addItem({
        command: CommandIDs.open,
        category: trans.__('Audit')
      });
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

export default plugin;
