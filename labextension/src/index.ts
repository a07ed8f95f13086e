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
import { ICommandPalette } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { auditTrailIcon } from './icons';
import { AuditTrailModel, DEFAULT_TRACE_LIMIT } from './model';
import { AuditTrailPanel, DEFAULT_REFRESH_INTERVAL, PANEL_ID } from './panel';

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

    const model = new AuditTrailModel({
      serverSettings: app.serviceManager.serverSettings
    });
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
