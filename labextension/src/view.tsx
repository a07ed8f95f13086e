/**
 * React rendering of the audit trail panel. Every string shown here comes
 * from the trail, i.e. from users: it is only ever rendered as React text
 * children or attributes, which React escapes — never as HTML.
 */
import * as React from 'react';

import type { TranslationBundle } from '@jupyterlab/translation';
import { VDomRenderer } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';

import type { ApprovalsModel } from './approvals';
import { ApprovalsSection } from './approvalsView';
import {
  extensionMissingMessage,
  isExtensionMissing,
  sessionEndedMessage,
  sessionEndedReason
} from './labels';
import type { AuditTrailModel } from './model';
import type { ISessionEnd } from './session';
import { Timeline } from './timelineView';
import { TraceList } from './traceListView';
import { UserSection } from './userView';
import type { IViewServices } from './viewServices';

/** Renders an `AuditTrailModel`, and the pending approvals when given. */
export class AuditTrailView extends VDomRenderer<AuditTrailModel> {
  constructor(
    model: AuditTrailModel,
    services: IViewServices,
    approvals: ApprovalsModel | null = null
  ) {
    super(model);
    this._services = services;
    this._approvals = approvals;
    approvals?.stateChanged.connect(this._onApprovalsChanged, this);
    this.addClass('jp-AuditTrail-view');
    this.node.addEventListener('keydown', this._onKeyDown);
  }

  dispose(): void {
    this.node.removeEventListener('keydown', this._onKeyDown);
    this._approvals?.stateChanged.disconnect(this._onApprovalsChanged, this);
    super.dispose();
  }

  protected render(): React.ReactElement {
    const model = this.model;
    const trans = this._services.trans;
    const ended = model.sessionEnd;
    if (ended !== null) {
      return (
        <div className="jp-AuditTrail-body">
          <SessionEnded end={ended} trans={trans} />
        </div>
      );
    }
    if (isExtensionMissing(model.meError)) {
      // One message: every other request fails the same way.
      return (
        <div className="jp-AuditTrail-body">
          <div className="jp-AuditTrail-error" role="alert">
            {extensionMissingMessage(trans)}
          </div>
        </div>
      );
    }
    return (
      <div className="jp-AuditTrail-body" aria-busy={model.loading}>
        <UserSection
          me={model.me}
          error={model.meError}
          integrity={model.trailIntegrity}
          trans={trans}
        />
        {model.selectedTraceId === null ? (
          <>
            {this._approvals && (
              <ApprovalsSection
                model={this._approvals}
                me={model.me}
                trans={trans}
              />
            )}
            <TraceList model={model} services={this._services} />
          </>
        ) : (
          <Timeline model={model} services={this._services} />
        )}
      </div>
    );
  }

  protected onUpdateRequest(msg: Message): void {
    super.onUpdateRequest(msg);
    // Back in the list: focus returns to the trace that was open.
    const id = this._returnFocusTo;
    if (id !== null && this.model.selectedTraceId === null) {
      requestAnimationFrame(() => {
        const card = this.node.querySelector<HTMLElement>(
          `.jp-AuditTrail-trace[data-trace-id="${CSS.escape(id)}"]`
        );
        if (card) {
          card.focus();
          this._returnFocusTo = null;
        }
      });
    }
  }

  /** Escape closes the detail pane, then the trace. */
  private _onKeyDown = (event: KeyboardEvent): void => {
    if (event.key !== 'Escape' || event.defaultPrevented) {
      return;
    }
    const target = event.target as HTMLElement | null;
    if (target?.closest('.jp-AuditTrail-approvals, .jp-AuditTrail-filters')) {
      return; // a form's own Escape
    }
    const model = this.model;
    if (model.selectedEvent !== null) {
      const seq = model.selectedEvent.seq;
      model.select(null);
      requestAnimationFrame(() =>
        this.node
          .querySelector<HTMLElement>(`.jp-AuditTrail-event[data-seq="${seq}"]`)
          ?.focus()
      );
    } else if (model.selectedTraceId !== null) {
      this._returnFocusTo = model.selectedTraceId;
      model.closeTrace();
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  };

  private _onApprovalsChanged(): void {
    this.update();
  }

  private _services: IViewServices;
  private _approvals: ApprovalsModel | null;
  private _returnFocusTo: string | null = null;
}

/** The sign-in session has ended: say so, and where to sign in again. */
function SessionEnded(props: {
  end: ISessionEnd;
  trans: TranslationBundle;
}): React.ReactElement {
  const { end, trans } = props;
  return (
    <section className="jp-AuditTrail-sessionEnded" role="alert">
      <p className="jp-AuditTrail-sessionEndedTitle">
        {sessionEndedMessage(trans)}
      </p>
      <p className="jp-AuditTrail-sessionEndedWhy">
        {sessionEndedReason(end, trans)}
      </p>
      <a className="jp-AuditTrail-signIn" href={end.signInUrl}>
        {trans.__('Sign in again')}
      </a>
    </section>
  );
}
