/**
 * React rendering of the audit trail panel. Every string shown here comes
 * from the trail, i.e. from users: it is only ever rendered as React text
 * children or attributes, which React escapes — never as HTML.
 */
import * as React from 'react';

import type { TranslationBundle } from '@jupyterlab/translation';
import { VDomRenderer, caretLeftIcon } from '@jupyterlab/ui-components';

import type { ApprovalsModel } from './approvals';
import { ApprovalsSection } from './approvalsView';
import { formatTime, summarizeEvent } from './format';
import {
  actorLabel,
  counts,
  errorMessage,
  isServerIdentity,
  notebookLabel,
  sessionEndedMessage,
  sessionEndedReason
} from './labels';
import type { AuditTrailModel } from './model';
import type { AuditAPIError } from './request';
import type { ISessionEnd } from './session';
import type { IMe, ITraceEvent } from './tokens';

/** Renders an `AuditTrailModel`, and the pending approvals when given. */
export class AuditTrailView extends VDomRenderer<AuditTrailModel> {
  constructor(
    model: AuditTrailModel,
    trans: TranslationBundle,
    approvals: ApprovalsModel | null = null
  ) {
    super(model);
    this._trans = trans;
    this._approvals = approvals;
    approvals?.stateChanged.connect(this._onApprovalsChanged, this);
    this.addClass('jp-AuditTrail-view');
  }

  dispose(): void {
    this._approvals?.stateChanged.disconnect(this._onApprovalsChanged, this);
    super.dispose();
  }

  protected render(): React.ReactElement {
    const model = this.model;
    const trans = this._trans;
    const ended = model.sessionEnd;
    if (ended !== null) {
      return (
        <div className="jp-AuditTrail-body">
          <SessionEnded end={ended} trans={trans} />
        </div>
      );
    }
    return (
      <div className="jp-AuditTrail-body" aria-busy={model.loading}>
        <UserSection me={model.me} error={model.meError} trans={trans} />
        {model.selectedTraceId === null ? (
          <>
            {this._approvals && (
              <ApprovalsSection
                model={this._approvals}
                me={model.me}
                trans={trans}
              />
            )}
            <TraceList model={model} trans={trans} />
          </>
        ) : (
          <Timeline model={model} trans={trans} />
        )}
      </div>
    );
  }

  private _onApprovalsChanged(): void {
    this.update();
  }

  private _trans: TranslationBundle;
  private _approvals: ApprovalsModel | null;
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

function ErrorBox(props: {
  error: AuditAPIError;
  trans: TranslationBundle;
}): React.ReactElement {
  return (
    <div className="jp-AuditTrail-error" role="alert">
      {errorMessage(props.error, props.trans)}
    </div>
  );
}

function UserSection(props: {
  me: IMe | null;
  error: AuditAPIError | null;
  trans: TranslationBundle;
}): React.ReactElement {
  const { me, error, trans } = props;
  if (me === null) {
    return (
      <section className="jp-AuditTrail-user">
        {error ? (
          <ErrorBox error={error} trans={trans} />
        ) : (
          <div className="jp-AuditTrail-placeholder">
            {trans.__('Loading…')}
          </div>
        )}
      </section>
    );
  }
  const identity = me.identity ?? { username: me.username };
  const integrity = me.trail?.integrity;
  const name = me.display_name || me.username;
  const roles = Array.isArray(me.roles) ? me.roles : [];
  const tokenOwner =
    identity.token_owner && identity.token_owner !== me.username
      ? identity.token_owner
      : null;
  return (
    <section
      className="jp-AuditTrail-user"
      aria-label={trans.__('Signed-in user')}
    >
      {integrity && !integrity.ok && (
        <div className="jp-AuditTrail-integrityAlert" role="alert">
          {trans.__(
            'Trail integrity check failed at record #%1: %2',
            integrity.first_bad_seq ?? '?',
            integrity.problem ?? trans.__('unknown problem')
          )}
        </div>
      )}
      <div className="jp-AuditTrail-userLine">
        <span className="jp-AuditTrail-userName" title={me.username}>
          {name}
        </span>
        {identity.auth_method && (
          <span className="jp-AuditTrail-authMethod">
            {trans.__('via %1', identity.auth_method)}
          </span>
        )}
      </div>
      {tokenOwner && (
        <div className="jp-AuditTrail-tokenOwner">
          {trans.__('token of %1', tokenOwner)}
        </div>
      )}
      {roles.length > 0 && (
        <ul className="jp-AuditTrail-roles" aria-label={trans.__('Roles')}>
          {roles.map(role => (
            <li key={role} className="jp-AuditTrail-role">
              {role}
            </li>
          ))}
        </ul>
      )}
      {me.trail && (
        <div className="jp-AuditTrail-trailStats">
          {trans._n(
            '%1 event in the trail',
            '%1 events in the trail',
            me.trail.events
          )}
          {integrity?.ok && (
            <span className="jp-AuditTrail-integrityOk">
              {' · '}
              {trans.__('integrity verified')}
            </span>
          )}
        </div>
      )}
      {error && <ErrorBox error={error} trans={trans} />}
    </section>
  );
}

function StatusBadge(props: { status: string }): React.ReactElement {
  // The class comes from a fixed set, never from the server's string.
  const running = props.status === 'running';
  return (
    <span
      className={`jp-AuditTrail-status ${running ? 'jp-mod-running' : 'jp-mod-ended'}`}
    >
      {props.status}
    </span>
  );
}

function TraceList(props: {
  model: AuditTrailModel;
  trans: TranslationBundle;
}): React.ReactElement {
  const { model, trans } = props;
  const traces = model.traces;
  return (
    <section className="jp-AuditTrail-traces">
      <h3 className="jp-AuditTrail-sectionTitle">{trans.__('Traces')}</h3>
      {model.tracesError && (
        <ErrorBox error={model.tracesError} trans={trans} />
      )}
      {traces === null && !model.tracesError && (
        <div className="jp-AuditTrail-placeholder">{trans.__('Loading…')}</div>
      )}
      {traces !== null && traces.length === 0 && (
        <div className="jp-AuditTrail-placeholder">
          {trans.__('No traces yet.')}
        </div>
      )}
      {traces !== null && traces.length > 0 && (
        <ul className="jp-AuditTrail-traceList">
          {traces.map(trace => (
            <li key={trace.trace_id}>
              <button
                type="button"
                className="jp-AuditTrail-trace"
                data-trace-id={trace.trace_id}
                title={trans.__(
                  'Show the timeline of trace %1',
                  trace.trace_id
                )}
                onClick={() => void model.openTrace(trace.trace_id)}
              >
                <span className="jp-AuditTrail-traceHead">
                  <span
                    className={`jp-AuditTrail-notebook${trace.notebook ? '' : ' jp-mod-none'}`}
                  >
                    {notebookLabel(trace, trans)}
                  </span>
                  <StatusBadge status={trace.status} />
                </span>
                <span className="jp-AuditTrail-traceUsers">
                  {(trace.users ?? []).join(', ')}
                </span>
                <span className="jp-AuditTrail-traceMeta">
                  <time
                    className="jp-AuditTrail-started"
                    dateTime={trace.started_at}
                  >
                    {formatTime(trace.started_at)}
                  </time>
                  <span className="jp-AuditTrail-counts">
                    {counts(trace, trans)}
                  </span>
                </span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function EventRow(props: {
  event: ITraceEvent;
  trans: TranslationBundle;
}): React.ReactElement {
  const { event, trans } = props;
  const summary = summarizeEvent(event);
  return (
    <li className="jp-AuditTrail-event" data-seq={event.seq}>
      <span className="jp-AuditTrail-eventHead">
        <span className="jp-AuditTrail-seq">#{event.seq}</span>
        <span className="jp-AuditTrail-kind">{event.kind}</span>
        <span
          className={`jp-AuditTrail-who${isServerIdentity(event.identity) ? ' jp-mod-system' : ''}`}
        >
          {actorLabel(event.identity, trans)}
        </span>
        <time className="jp-AuditTrail-time" dateTime={event.time}>
          {formatTime(event.time)}
        </time>
      </span>
      <span
        className={`jp-AuditTrail-summary${summary === event.kind ? ' jp-mod-fallback' : ''}`}
        title={summary}
      >
        {summary}
      </span>
    </li>
  );
}

function Timeline(props: {
  model: AuditTrailModel;
  trans: TranslationBundle;
}): React.ReactElement {
  const { model, trans } = props;
  const detail = model.detail;
  const trace = detail?.trace ?? null;
  return (
    <section className="jp-AuditTrail-timeline">
      <button
        type="button"
        className="jp-AuditTrail-back"
        onClick={() => model.closeTrace()}
      >
        <caretLeftIcon.react tag="span" className="jp-AuditTrail-backIcon" />
        {trans.__('Back to traces')}
      </button>
      {trace && (
        <div className="jp-AuditTrail-traceInfo">
          <div className="jp-AuditTrail-traceHead">
            <span
              className={`jp-AuditTrail-notebook${trace.notebook ? '' : ' jp-mod-none'}`}
            >
              {notebookLabel(trace, trans)}
            </span>
            <StatusBadge status={trace.status} />
          </div>
          <div className="jp-AuditTrail-traceUsers">
            {(trace.users ?? []).join(', ')}
          </div>
          <div className="jp-AuditTrail-traceMeta">
            <time dateTime={trace.started_at}>
              {formatTime(trace.started_at)}
            </time>
            {' – '}
            <time dateTime={trace.last_at}>{formatTime(trace.last_at)}</time>
          </div>
          <div className="jp-AuditTrail-traceId" title={trace.kernel_id ?? ''}>
            {trans.__('Trace %1', trace.trace_id)}
          </div>
        </div>
      )}
      {model.detailError && (
        <ErrorBox error={model.detailError} trans={trans} />
      )}
      {!model.detailLoaded && !model.detailError && (
        <div className="jp-AuditTrail-placeholder">{trans.__('Loading…')}</div>
      )}
      {model.detailLoaded && detail && detail.events.length === 0 && (
        <div className="jp-AuditTrail-placeholder">
          {trans.__('This trace has no events.')}
        </div>
      )}
      {model.detailLoaded && detail && detail.events.length > 0 && (
        <ol className="jp-AuditTrail-events" aria-label={trans.__('Timeline')}>
          {detail.events.map(event => (
            <EventRow key={event.seq} event={event} trans={trans} />
          ))}
        </ol>
      )}
    </section>
  );
}
