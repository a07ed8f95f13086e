/**
 * The "Audit trail" sidebar panel: a header, a toolbar with a refresh button,
 * and the React view. Reloads on its own while it is visible.
 */
import { Notification } from '@jupyterlab/apputils';
import type { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import type { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import { nullTranslator } from '@jupyterlab/translation';
import {
  SidePanel,
  ToolbarButton,
  refreshIcon
} from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import type { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { ApprovalsModel } from './approvals';
import { downloadBundle } from './download';
import { errorMessage } from './labels';
import type { ExportTarget } from './query';
import { AuditAPIError } from './request';
import type { IViewServices } from './viewServices';
import { auditTrailIcon } from './icons';
import { AuditTrailModel } from './model';
import { AuditTrailView } from './view';

/** Id of the panel in the shell. */
export const PANEL_ID = 'jupyter-audit:panel';

/** Default seconds between automatic refreshes. */
export const DEFAULT_REFRESH_INTERVAL = 10;

/**
 * Seconds between checks for pending approvals while the panel is closed
 * (the sidebar tab then shows how many wait).
 */
export const BACKGROUND_APPROVALS_INTERVAL = 30;

/** The sidebar tab's `data-` attribute holding the number of pending approvals. */
export const PENDING_BADGE = 'audit-pending';

export class AuditTrailPanel extends SidePanel {
  constructor(options: AuditTrailPanel.IOptions) {
    const translator = options.translator ?? nullTranslator;
    super({ content: new Panel(), translator });
    const trans = translator.load('jupyter-audit');
    this.id = PANEL_ID;
    this.addClass('jp-AuditTrail-panel');
    this.title.icon = auditTrailIcon;
    this.title.caption = trans.__('Audit trail');

    this.model = options.model;
    this.approvals =
      options.approvals ??
      new ApprovalsModel({
        serverSettings: options.model.serverSettings,
        session: options.model.session
      });
    // Without a session watch, the trail model still notices a new user.
    this.model.userForgotten.connect(() => this.approvals.forget(), this);

    const heading = new Widget({ node: document.createElement('h2') });
    heading.node.textContent = trans.__('Audit trail');
    heading.addClass('jp-AuditTrail-title');
    this.header.addWidget(heading);

    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        className: 'jp-AuditTrail-refresh',
        tooltip: trans.__('Refresh the audit trail'),
        onClick: () => void this._refresh()
      })
    );

    this._services = {
      trans,
      languages: options.languages ?? null,
      openCell: options.openCell ?? null,
      download: target => this._download(target)
    };
    this.addWidget(
      new AuditTrailView(this.model, this._services, this.approvals)
    );

    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: {
        interval: toMilliseconds(
          options.refreshInterval ?? DEFAULT_REFRESH_INTERVAL
        ),
        backoff: false
      },
      // Poll only while the panel is expanded and the browser tab is shown.
      standby: () => !this.isVisible || 'when-hidden',
      name: 'jupyter-audit:panel'
    });

    // While the panel is closed, the tab still says how many requests wait.
    this._approvalsPoll = new Poll({
      factory: () => this.approvals.refresh(),
      frequency: {
        interval: BACKGROUND_APPROVALS_INTERVAL * 1000,
        backoff: false
      },
      standby: () => this.isVisible || 'when-hidden',
      name: 'jupyter-audit:approvals'
    });
    this._auditTrans = trans;
    this.approvals.stateChanged.connect(this._showPending, this);
    void this._approvalsPoll.refresh();

    // A reviewer coming back to the tab sees what waits now, not what waited.
    window.addEventListener('focus', this._onWindowFocus);
  }

  /** The panel's state. */
  readonly model: AuditTrailModel;

  /** The pending approvals shown above the traces. */
  readonly approvals: ApprovalsModel;

  /** Seconds between automatic refreshes while visible; 0 turns them off. */
  set refreshInterval(seconds: number) {
    this._poll.frequency = {
      ...this._poll.frequency,
      interval: toMilliseconds(seconds)
    };
  }

  /** Reload everything shown now. */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  /** Put the keyboard in the search box (back in the list first). */
  focusSearch(): void {
    if (this.model.selectedTraceId !== null) {
      this.model.closeTrace();
    }
    requestAnimationFrame(() =>
      this.node
        .querySelector<HTMLInputElement>('.jp-AuditTrail-search')
        ?.focus()
    );
  }

  /** Download the evidence bundle of the open trace, or of the filtered list. */
  exportShown(): Promise<void> {
    const traceId = this.model.selectedTraceId;
    return this._download(
      traceId !== null ? { trace: traceId } : { filter: this.model.filter }
    );
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.removeEventListener('focus', this._onWindowFocus);
    this.approvals.stateChanged.disconnect(this._showPending, this);
    this._approvalsPoll.dispose();
    this._poll.dispose();
    this.approvals.dispose();
    this.model.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    // Show fresh data as soon as the panel is opened.
    void this._poll.refresh();
  }

  private async _refresh(): Promise<void> {
    await Promise.all([this.model.refresh(), this.approvals.refresh()]);
  }

  /** The number of pending requests on the sidebar tab, and in its caption. */
  private _showPending(): void {
    const count = this.approvals.pending?.length ?? 0;
    // Keep the rest of the dataset: the shell identifies the tab by data-id.
    const { [PENDING_BADGE]: _old, ...dataset } = this.title.dataset;
    const trans = this._auditTrans;
    if (count > 0 && _old !== String(count)) {
      this.title.dataset = { ...dataset, [PENDING_BADGE]: String(count) };
      this.title.caption = trans._n(
        'Audit trail: %1 request waits for approval',
        'Audit trail: %1 requests wait for approval',
        count
      );
    } else if (count === 0 && _old !== undefined) {
      this.title.dataset = dataset;
      this.title.caption = trans.__('Audit trail');
    }
  }

  private async _download(target: ExportTarget): Promise<void> {
    const trans = this._auditTrans;
    try {
      const name = await downloadBundle(target, this.model.serverSettings);
      Notification.success(trans.__('Evidence bundle saved as %1', name), {
        autoClose: 5000
      });
    } catch (reason) {
      const message =
        reason instanceof AuditAPIError
          ? errorMessage(reason, trans)
          : String(reason);
      Notification.error(trans.__('Export failed: %1', message), {
        autoClose: false
      });
    }
  }

  private _onWindowFocus = (): void => {
    void (this.isVisible ? this._poll : this._approvalsPoll).refresh();
  };

  private _poll: Poll;
  private _services: IViewServices;
  private _approvalsPoll: Poll;
  private _auditTrans: TranslationBundle;
}

function toMilliseconds(seconds: number): number {
  return seconds > 0 ? seconds * 1000 : Poll.NEVER;
}

export namespace AuditTrailPanel {
  export interface IOptions {
    model: AuditTrailModel;
    /** The pending approvals; by default a new model on `model`'s server. */
    approvals?: ApprovalsModel;
    translator?: ITranslator;
    /** Seconds between automatic refreshes while visible; 0 turns them off. */
    refreshInterval?: number;
    /** JupyterLab's languages, for syntax highlighting of code and queries. */
    languages?: IEditorLanguageRegistry | null;
    /** Opens a notebook at a cell ("open notebook at this cell"). */
    openCell?: IViewServices['openCell'];
  }
}
