import { describe, expect, it } from 'vitest';

import { nullTranslator } from '@jupyterlab/translation';

import {
  actorLabel,
  counts,
  errorMessage,
  isServerIdentity,
  notebookLabel
} from '../labels';
import { AuditAPIError } from '../request';

import { trace } from './factories';

const trans = nullTranslator.load('jupyter-audit');

describe('errorMessage', () => {
  it('says a 403 means a missing role, with the server’s message', () => {
    const error = new AuditAPIError(
      403,
      'needs: reviewer or auditor',
      'forbidden'
    );
    expect(errorMessage(error, trans)).toBe(
      'Your account lacks the role to see this (needs: reviewer or auditor)'
    );
  });

  it('wraps a 401’s message as not allowed', () => {
    const error = new AuditAPIError(401, 'sign in', 'unauthorized');
    expect(errorMessage(error, trans)).toBe(
      'You are not allowed to see this (sign in)'
    );
  });

  it('shows any other error’s message as it is', () => {
    const error = new AuditAPIError(500, 'the trail is locked');
    expect(errorMessage(error, trans)).toBe('the trail is locked');
    const network = new AuditAPIError(0, 'Cannot reach the Jupyter server.');
    expect(errorMessage(network, trans)).toBe(
      'Cannot reach the Jupyter server.'
    );
  });

  it('keeps markup and placeholders in the message as text', () => {
    const error = new AuditAPIError(403, '<b>%1</b> & %2');
    expect(errorMessage(error, trans)).toBe(
      'Your account lacks the role to see this (<b>%1</b> & %2)'
    );
  });
});

describe('notebookLabel', () => {
  it('shows the notebook path as it is', () => {
    const notebook = 'work/<img src=x onerror=alert(1)>.ipynb';
    expect(notebookLabel(trace({ notebook }), trans)).toBe(notebook);
  });

  it('shows a placeholder without a notebook', () => {
    expect(notebookLabel(trace({ notebook: null }), trans)).toBe(
      '(no notebook)'
    );
    expect(notebookLabel(trace({ notebook: '' }), trans)).toBe('(no notebook)');
  });
});

describe('counts', () => {
  it('pluralizes each count', () => {
    expect(counts(trace({ events: 0, cells: 1, operations: 2 }), trans)).toBe(
      '0 events · 1 cell · 2 operations'
    );
    expect(counts(trace({ events: 1, cells: 0, operations: 1 }), trans)).toBe(
      '1 event · 0 cells · 1 operation'
    );
  });

  it('prints large counts in full', () => {
    expect(
      counts(trace({ events: 1234567, cells: 1000, operations: 99 }), trans)
    ).toBe('1234567 events · 1000 cells · 99 operations');
  });
});

describe('actorLabel', () => {
  it('names a person or service account by username', () => {
    expect(actorLabel({ username: 'alice', auth_method: 'oidc' }, trans)).toBe(
      'alice'
    );
    expect(
      actorLabel({ username: 'root', auth_method: 'token' }, trans) // token login
    ).toBe('root');
  });

  it('says the server’s own events are the server’s', () => {
    const server = {
      username: 'root',
      auth_method: 'system',
      display_name: 'jupyter-audit server (root)'
    };
    expect(actorLabel(server, trans)).toBe('jupyter-audit server (root)');
    expect(isServerIdentity(server)).toBe(true);
    // snapshots from before trail format 3 carry no display name
    expect(
      actorLabel({ username: 'jovyan', auth_method: 'system' }, trans)
    ).toBe('jupyter-audit server (jovyan)');
  });

  it('never takes a person’s chosen display name for the server', () => {
    const eve = {
      username: 'eve',
      auth_method: 'oidc',
      display_name: 'jupyter-audit server (root)'
    };
    expect(actorLabel(eve, trans)).toBe('eve');
    expect(isServerIdentity(eve)).toBe(false);
  });

  it('keeps markup and placeholders in a username as text', () => {
    const username = '<img src=x onerror=alert(1)>%1';
    expect(actorLabel({ username, auth_method: 'system' }, trans)).toBe(
      `jupyter-audit server (${username})`
    );
  });

  it('shows a placeholder without an identity', () => {
    expect(actorLabel(null, trans)).toBe('(no identity)');
    expect(isServerIdentity(undefined)).toBe(false);
  });
});
