import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { recordedByLabel, trailSourceLabel } from '../labels';
import type { IMe } from '../tokens';
import { UserSection } from '../userView';

import { trace, traceListHtml, trans } from './factories';

function me(fields: Partial<IMe>): IMe {
  return {
    username: 'alice',
    display_name: 'alice',
    identity: { username: 'alice' },
    roles: ['user'],
    trail: {
      events: 3,
      last_seq: 3,
      integrity: { ok: true, first_bad_seq: null, problem: null }
    },
    ...fields
  } as IMe;
}

describe('trailSourceLabel', () => {
  it('says nothing for the server’s own trail', () => {
    expect(trailSourceLabel(me({ source: 'server' }), trans)).toBeNull();
    expect(trailSourceLabel(me({}), trans)).toBeNull();
    expect(trailSourceLabel(null, trans)).toBeNull();
  });

  it('says the panel reads the Hub’s trail, by the collector’s roles', () => {
    expect(trailSourceLabel(me({ source: 'collector' }), trans)).toBe(
      "JupyterHub's audit trail: your servers"
    );
    const auditor = me({ source: 'collector', roles: ['user', 'auditor'] });
    expect(trailSourceLabel(auditor, trans)).toBe(
      "JupyterHub's audit trail: every server"
    );
  });

  it('takes no role from anything but the roles list', () => {
    const odd = me({ source: 'collector', roles: 'auditor' as never });
    expect(trailSourceLabel(odd, trans)).toBe(
      "JupyterHub's audit trail: your servers"
    );
  });
});

describe('recordedByLabel', () => {
  it('names the recording server of a Hub trace, as plain text', () => {
    expect(recordedByLabel(trace({}), trans)).toBeNull();
    expect(recordedByLabel(trace({ server: 'bob/' }), trans)).toBe(
      'recorded by server bob/'
    );
    const label = recordedByLabel(
      trace({ server: 'eve/<img src=x onerror=alert(1)>' }),
      trans
    );
    expect(label).toContain('<img src=x onerror=alert(1)>');
  });
});

describe('the panel under a Hub', () => {
  it('shows a visible label that it reads the Hub’s trail, and the collector’s roles', () => {
    const html = renderToStaticMarkup(
      React.createElement(UserSection, {
        me: me({ source: 'collector', roles: ['user', 'reviewer'] }),
        error: null,
        integrity: null,
        trans
      })
    );
    expect(html).toContain('jp-AuditTrail-source');
    expect(html).toContain('JupyterHub&#x27;s audit trail: your servers');
    expect(html).toContain('>reviewer<');
    const own = renderToStaticMarkup(
      React.createElement(UserSection, {
        me: me({ source: 'server' }),
        error: null,
        integrity: null,
        trans
      })
    );
    expect(own).not.toContain('jp-AuditTrail-source');
  });

  it('names each trace’s recording server as escaped text', () => {
    const html = traceListHtml([
      trace({ server: 'eve/<img src=x onerror=alert(1)>' })
    ]);
    expect(html).toContain('recorded by server eve/&lt;img src=x');
    expect(html).not.toContain('<img');
  });
});
