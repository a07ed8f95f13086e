/**
 * The panel's header: who is signed in (name, auth method, token owner, roles),
 * which trail the panel reads (this server's own, or the JupyterHub's through
 * its collector) and the trail's counts and integrity. Every string is
 * rendered as React text, which React escapes, never as HTML.
 */
import * as React from 'react';

import type { TranslationBundle } from '@jupyterlab/translation';

import { trailIntegrityAlert, trailSourceLabel } from './labels';
import type { AuditAPIError } from './request';
import { revealText } from './reveal';
import type { IIntegrity, IMe } from './tokens';
import { ErrorBox } from './viewParts';

export function UserSection(props: {
  me: IMe | null;
  error: AuditAPIError | null;
  integrity: IIntegrity | null;
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
  const integrity = props.integrity;
  const name = revealText(me.display_name || me.username);
  const roles = Array.isArray(me.roles) ? me.roles : [];
  const source = trailSourceLabel(me, trans);
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
          <span aria-hidden="true">⊘ </span>
          {trailIntegrityAlert(integrity, trans)}
        </div>
      )}
      {source && (
        <div className="jp-AuditTrail-source" role="note">
          {source}
        </div>
      )}
      <div className="jp-AuditTrail-userLine">
        <span
          className="jp-AuditTrail-userName"
          title={revealText(me.username)}
        >
          {name}
        </span>
        {identity.auth_method && (
          <span className="jp-AuditTrail-authMethod">
            {trans.__('via %1', revealText(identity.auth_method))}
          </span>
        )}
      </div>
      {tokenOwner && (
        <div className="jp-AuditTrail-tokenOwner">
          {trans.__('token of %1', revealText(tokenOwner))}
        </div>
      )}
      {roles.length > 0 && (
        <ul className="jp-AuditTrail-roles" aria-label={trans.__('Roles')}>
          {roles.map(role => (
            <li key={role} className="jp-AuditTrail-role">
              {revealText(role)}
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
