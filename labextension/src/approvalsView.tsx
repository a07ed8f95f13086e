/**
 * React rendering of the pending-approvals view: for each request the
 * requester, notebook, the statement, the cell's code, the rules that flagged
 * it, when it was asked and when it expires, and approve/deny with a reason.
 * Every string here comes from users (a statement may hold HTML or markdown):
 * it is only rendered as React text children or attributes, which React
 * escapes — never as HTML, never through a markdown renderer.
 */
import * as React from 'react';

import type { TranslationBundle } from '@jupyterlab/translation';

import type { ApprovalsModel, IVoteOutcome } from './approvals';
import { collectorPrefix } from './collectorDecide';
import { formatTime } from './format';
import { revealText } from './reveal';
import { errorMessage } from './labels';
import type { IApproval, IApprovalDecision, IMe } from './tokens';

/** The pending requests, then the ones decided since the panel saw them. */
export function ApprovalsSection(props: {
  model: ApprovalsModel;
  me: IMe | null;
  trans: TranslationBundle;
}): React.ReactElement {
  const { model, trans } = props;
  const pending = model.pending;
  const recent = model.recent;
  return (
    <section
      className="jp-AuditTrail-approvals"
      aria-label={trans.__('Pending approvals')}
    >
      <h3 className="jp-AuditTrail-sectionTitle">
        {trans.__('Pending approvals')}
        {pending !== null && pending.length > 0 && (
          <span className="jp-AuditTrail-approvalCount">
            {' '}
            ({pending.length})
          </span>
        )}
      </h3>
      {model.error && (
        <div className="jp-AuditTrail-approvalsError" role="alert">
          {errorMessage(model.error, trans)}
        </div>
      )}
      {pending === null && !model.error && (
        <div className="jp-AuditTrail-placeholder">{trans.__('Loading…')}</div>
      )}
      {pending !== null && pending.length === 0 && (
        <div className="jp-AuditTrail-placeholder jp-AuditTrail-noApprovals">
          {trans.__('Nothing waits for approval.')}
        </div>
      )}
      {pending !== null && pending.length > 0 && (
        <ApprovalList approvals={pending} {...props} />
      )}
      {recent.length > 0 && (
        <>
          <h4 className="jp-AuditTrail-subTitle">{trans.__('Decided')}</h4>
          <ApprovalList approvals={recent} decided={true} {...props} />
        </>
      )}
    </section>
  );
}

function ApprovalList(props: {
  approvals: IApproval[];
  decided?: boolean;
  model: ApprovalsModel;
  me: IMe | null;
  trans: TranslationBundle;
}): React.ReactElement {
  const { approvals, decided, model, me, trans } = props;
  return (
    <ul
      className={`jp-AuditTrail-approvalList${decided ? ' jp-mod-decided' : ''}`}
    >
      {approvals.map(approval => (
        <li key={approval.id}>
          <ApprovalCard
            approval={approval}
            model={model}
            me={me}
            trans={trans}
          />
        </li>
      ))}
    </ul>
  );
}

/** The state as a badge; its class comes from a fixed set, not the server. */
function StateBadge(props: {
  state: string;
  trans: TranslationBundle;
}): React.ReactElement {
  const known = [
    'pending',
    'approved',
    'denied',
    'expired',
    'cancelled',
    'executed'
  ];
  const mod = known.includes(props.state) ? props.state : 'unknown';
  return (
    <span
      className={`jp-AuditTrail-approvalState jp-mod-${mod}`}
      data-state={props.state}
    >
      {props.state}
    </span>
  );
}

function DecisionLine(props: {
  decision: IApprovalDecision;
  trans: TranslationBundle;
}): React.ReactElement {
  const { decision, trans } = props;
  const verb =
    decision.decision === 'approve'
      ? trans.__('approved by %1', decision.reviewer)
      : decision.decision === 'deny'
        ? trans.__('denied by %1', decision.reviewer)
        : trans.__('%1 by %2', decision.decision, decision.reviewer);
  return (
    <li className="jp-AuditTrail-approvalDecision">
      <span>{verb}</span>
      {decision.break_glass && (
        <span className="jp-AuditTrail-breakGlass">
          {' '}
          {trans.__('(break-glass)')}
        </span>
      )}
      {decision.time && (
        <>
          {' · '}
          <time dateTime={decision.time}>{formatTime(decision.time)}</time>
        </>
      )}
      {decision.reason && (
        <span className="jp-AuditTrail-decisionReason">
          {': '}
          {decision.reason}
        </span>
      )}
    </li>
  );
}

/** The words for a refused or accepted decision, with the server's reason. */
function outcomeText(outcome: IVoteOutcome, trans: TranslationBundle): string {
  if (outcome.ok) {
    return outcome.message;
  }
  switch (outcome.status) {
    case 0:
      return outcome.message;
    case 401:
    case 403:
      return trans.__('The server refused your decision: %1', outcome.message);
    case 404:
      return trans.__('This request is gone: %1', outcome.message);
    case 409:
      return trans.__('This request is no longer pending: %1', outcome.message);
    default:
      return trans.__('Your decision was not recorded: %1', outcome.message);
  }
}

/** Whether there are parameters to show (none, `[]` or `{}`: nothing shown). */
export function hasParams(params: unknown): boolean {
  if (params === null || params === undefined) {
    return false;
  }
  if (Array.isArray(params)) {
    return params.length > 0;
  }
  return typeof params !== 'object' || Object.keys(params).length > 0;
}

/** The parameters as one line of JSON (rendered as text, never markup). */
export function paramsText(params: unknown): string {
  try {
    return JSON.stringify(params) ?? String(params);
  } catch {
    return String(params);
  }
}

function ApprovalCard(props: {
  approval: IApproval;
  model: ApprovalsModel;
  me: IMe | null;
  trans: TranslationBundle;
}): React.ReactElement {
  const { approval, model, me, trans } = props;
  const id = approval.id;
  const headingId = `jp-AuditTrail-approval-${id}`;
  const reasonId = `jp-AuditTrail-approvalReason-${id}`;
  const roles = Array.isArray(me?.roles) ? me.roles : [];
  const collector = collectorPrefix(me);
  const own = me !== null && approval.requester === me.username;
  const reasons = Array.isArray(approval.reasons) ? approval.reasons : [];
  const ruleIds = Array.isArray(approval.rules) ? approval.rules : [];
  // Rules named only in `rules` (no message) still show their id.
  const unexplained = ruleIds.filter(
    rule => !reasons.some(r => r.rule === rule)
  );
  const decisions = Array.isArray(approval.decisions) ? approval.decisions : [];
  const approvals = decisions.filter(d => d.decision === 'approve').length;
  const needed = approval.min_approvals > 0 ? approval.min_approvals : 1;
  // Reviewers may try any request; the server alone decides who may decide
  // (it refuses the requester, admins included) and its refusal is shown.
  const canDecide =
    approval.state === 'pending' &&
    (!own || roles.includes('reviewer') || roles.includes('break-glass'));
  // Deciding only as break-glass (at a server or the Hub's collector): every
  // decision needs a reason, and is flagged.
  const breakGlass =
    roles.includes('break-glass') && !roles.includes('reviewer');
  const voting = model.isVoting(id);
  const outcome = model.outcome(id);

  return (
    <article
      className={`jp-AuditTrail-approval${own ? ' jp-mod-own' : ''}`}
      data-approval-id={id}
      aria-labelledby={headingId}
    >
      <div className="jp-AuditTrail-approvalHead" id={headingId}>
        <span className="jp-AuditTrail-approvalId">#{id}</span>
        <span className="jp-AuditTrail-approvalKind">{approval.kind}</span>
        <StateBadge state={approval.state} trans={trans} />
        <span className="jp-AuditTrail-approvalRequester">
          {trans.__('asked by %1', revealText(approval.requester))}
        </span>
        {own && (
          <span className="jp-AuditTrail-approvalOwn">
            {trans.__('(your request)')}
          </span>
        )}
      </div>
      <dl className="jp-AuditTrail-approvalMeta">
        <dt>{trans.__('Notebook')}</dt>
        <dd className="jp-AuditTrail-approvalNotebook">
          {approval.notebook
            ? revealText(approval.notebook)
            : trans.__('(no notebook)')}
        </dd>
        <dt>{trans.__('Asked')}</dt>
        <dd>
          <time
            className="jp-AuditTrail-approvalAsked"
            dateTime={approval.requested_at}
          >
            {formatTime(approval.requested_at)}
          </time>
        </dd>
        <dt>{trans.__('Expires')}</dt>
        <dd>
          <time
            className="jp-AuditTrail-approvalExpires"
            dateTime={approval.expires_at}
          >
            {formatTime(approval.expires_at)}
          </time>
        </dd>
      </dl>
      <div className="jp-AuditTrail-approvalLabel">
        {approval.kind === 'sql'
          ? trans.__('Statement')
          : approval.kind === 'shell'
            ? trans.__('Command')
            : approval.kind === 'http'
              ? trans.__('Request')
              : trans.__('Operation')}
      </div>
      <pre className="jp-AuditTrail-approvalStatement">
        <code>{revealText(approval.statement)}</code>
      </pre>
      {hasParams(approval.params) && (
        <>
          <div className="jp-AuditTrail-approvalLabel">
            {trans.__('Parameters (masked)')}
          </div>
          <pre className="jp-AuditTrail-approvalParams">
            <code>{revealText(paramsText(approval.params))}</code>
          </pre>
        </>
      )}
      {(reasons.length > 0 || unexplained.length > 0) && (
        <ul
          className="jp-AuditTrail-approvalRules"
          aria-label={trans.__('Rules that flagged it')}
        >
          {reasons.map((reason, i) => (
            <li key={`${reason.rule}-${i}`} className="jp-AuditTrail-rule">
              <code className="jp-AuditTrail-ruleId">{reason.rule}</code>{' '}
              <span className="jp-AuditTrail-ruleMessage">
                {reason.message}
              </span>
            </li>
          ))}
          {unexplained.map(rule => (
            <li key={rule} className="jp-AuditTrail-rule">
              <code className="jp-AuditTrail-ruleId">{rule}</code>
            </li>
          ))}
        </ul>
      )}
      {approval.cell_code && (
        <details className="jp-AuditTrail-approvalCell">
          <summary>{trans.__("The cell's code")}</summary>
          <pre className="jp-AuditTrail-approvalCode">
            <code>{revealText(approval.cell_code)}</code>
          </pre>
        </details>
      )}
      {(decisions.length > 0 || needed > 1) && (
        <div className="jp-AuditTrail-approvalProgress">
          {needed > 1 &&
            trans.__('%1 of %2 approvals', String(approvals), String(needed))}
          {decisions.length > 0 && (
            <ul className="jp-AuditTrail-approvalDecisions">
              {decisions.map((decision, i) => (
                <DecisionLine key={i} decision={decision} trans={trans} />
              ))}
            </ul>
          )}
        </div>
      )}
      {canDecide && (
        <form
          className="jp-AuditTrail-approvalForm"
          onSubmit={event => event.preventDefault()}
        >
          <label htmlFor={reasonId} className="jp-AuditTrail-reasonLabel">
            {breakGlass
              ? trans.__('Reason (required: you decide as break-glass)')
              : trans.__('Reason (required to deny)')}
          </label>
          <textarea
            id={reasonId}
            className="jp-AuditTrail-reason jp-mod-styled"
            rows={2}
            value={model.reason(id)}
            disabled={voting}
            onChange={event => model.setReason(id, event.target.value)}
          />
          <div className="jp-AuditTrail-approvalButtons">
            <button
              type="button"
              className="jp-AuditTrail-approve jp-mod-styled jp-mod-accept"
              disabled={voting}
              onClick={() => void model.decide(id, 'approve', roles, collector)}
            >
              {trans.__('Approve')}
            </button>
            <button
              type="button"
              className="jp-AuditTrail-deny jp-mod-styled jp-mod-warn"
              disabled={voting}
              onClick={() => void model.decide(id, 'deny', roles, collector)}
            >
              {trans.__('Deny')}
            </button>
          </div>
        </form>
      )}
      {outcome && (
        <div
          className={`jp-AuditTrail-approvalOutcome ${outcome.ok ? 'jp-mod-ok' : 'jp-mod-refused'}`}
          role={outcome.ok ? 'status' : 'alert'}
        >
          {outcomeText(outcome, trans)}
        </div>
      )}
    </article>
  );
}
