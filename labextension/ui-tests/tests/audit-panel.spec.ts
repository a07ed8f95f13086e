/**
 * The "Audit trail" panel in a real JupyterLab and Chromium, against the real
 * jupyter-audit server on a demo trail (see jupyter_server_test_config.py).
 * Expected values are read from the REST API, so the tests follow the demo
 * data rather than hard-coding it.
 */
import { expect, test } from '@jupyterlab/galata';
import type { IJupyterLabPageFixture } from '@jupyterlab/galata';
import type { Locator, Page } from '@playwright/test';

// The API's shapes as the extension itself declares them (type-only: nothing
// of the extension's code runs here).
import type {
  IMe,
  ITraceDetail,
  ITraceEvent,
  ITraceList,
  ITraceSummary
} from '../../src/tokens';

import { PANEL_ID, api, useRealServerAndFailOnDialogs } from './common';

const XSS_NOTEBOOK = '<img src=x onerror=alert(1)>.ipynb';

async function apiTraces(page: Page): Promise<ITraceSummary[]> {
  const { traces } = await api<ITraceList>(page, 'traces?limit=50');
  return [...traces].sort(
    (a, b) => Date.parse(b.started_at) - Date.parse(a.started_at)
  );
}

async function apiEvents(page: Page, traceId: string): Promise<ITraceEvent[]> {
  const { events } = await api<ITraceDetail>(
    page,
    `traces/${encodeURIComponent(traceId)}?fold=0&limit=5000`
  );
  return [...events].sort((a, b) => a.seq - b.seq);
}

/**
 * The summary line the panel must show for an event, written out again here
 * from the specification rather than imported from the extension.
 */
function expectedSummary(event: ITraceEvent): string {
  const p = event.payload ?? {};
  const text = (v: unknown): string | null =>
    typeof v === 'string' || typeof v === 'number' ? String(v) : null;
  let summary: string | null = null;
  if (event.kind.startsWith('cell.')) {
    const code = text(p.code);
    summary =
      code === null
        ? null
        : (code.split(/\r?\n/).find(l => l.trim() !== '') ?? '').trim();
  } else if (event.kind === 'op.sql') {
    summary = text(p.statement);
  } else if (event.kind === 'op.http') {
    if (p.method !== undefined || p.url !== undefined) {
      summary = `${text(p.method) ?? ''} ${text(p.url) ?? ''}`.trim();
      summary += ` → ${text(p.status) ?? '?'}`;
    }
  } else if (event.kind === 'op.shell') {
    summary = text(p.command);
  } else if (
    [
      'session.started',
      'session.ended',
      'session.interrupted',
      'cell.unreported'
    ].includes(event.kind)
  ) {
    summary =
      text(p.reason) === null ? null : `${event.kind} (${text(p.reason)})`;
  } else if (event.kind === 'session.renamed') {
    summary =
      text(p.to) === null ? null : `${text(p.from) ?? '?'} → ${text(p.to)}`;
  } else if (event.kind === 'file.saved') {
    const sha = text(p.sha256);
    summary =
      text(p.path) === null
        ? null
        : sha
          ? `${text(p.path)} (sha256 ${sha.slice(0, 12)})`
          : text(p.path);
  } else if (event.kind === 'session.environment') {
    const parts = [text(p.kernelspec), text(p.python_version)];
    if (Array.isArray(p.packages)) {
      parts.push(`${p.packages.length} packages`);
    }
    summary = parts.filter(x => x !== null).join(' · ') || null;
  } else if (event.kind === 'trail.accessed') {
    summary =
      text(p.action) === null
        ? null
        : `${text(p.action)} ${text(p.trace_id) ?? ''}`;
  } else if (event.kind.startsWith('approval.')) {
    summary = [event.kind, text(p.decision), text(p.statement)]
      .filter(x => x !== null)
      .join(' ');
  }
  summary = (summary ?? '').replace(/\s+/g, ' ').trim();
  if (summary === '') {
    summary = event.kind;
  }
  return summary.length > 240 ? `${summary.slice(0, 239)}…` : summary;
}

/**
 * Who the panel must show for an event: a person's or service account's
 * username; the server's own events (`auth_method` `system`) as the server's.
 */
function expectedWho(event: ITraceEvent): string {
  const identity = event.identity;
  if (!identity) {
    return '(no identity)';
  }
  return identity.auth_method === 'system'
    ? `jupyter-audit server (${identity.username})`
    : identity.username;
}

/** Who the list names: people by username, service accounts with their owner. */
function participantsText(trace: ITraceSummary): string {
  if (!trace.participants) {
    return trace.users.join(', ');
  }
  return trace.participants
    .map(p =>
      p.service_account
        ? p.token_owner
          ? `${p.username} (service account of ${p.token_owner})`
          : `${p.username} (service account)`
        : p.username
    )
    .join(', ');
}

function panelLocator(page: Page): Locator {
  return page.locator('.jp-AuditTrail-panel');
}

function traceButton(panel: Locator, traceId: string): Locator {
  return panel.locator(
    `.jp-AuditTrail-trace[data-trace-id=${JSON.stringify(traceId)}]`
  );
}

async function openPanel(page: IJupyterLabPageFixture): Promise<Locator> {
  const tab = page.sidebar.getTabLocator(PANEL_ID);
  await expect(tab).toBeVisible();
  await tab.click();
  const panel = panelLocator(page);
  await expect(panel).toBeVisible();
  await expect(panel.locator('.jp-AuditTrail-trace').first()).toBeVisible();
  return panel;
}

/**
 * The timeline shows every event of the trace: a cell's records as one cell
 * row (its first line of code, who asked for it), its operations nested under
 * it (statement, `METHOD url → status`, command), and any other record as a
 * row of its own (kind, who, summary).
 */
async function checkTimeline(
  page: Page,
  panel: Locator,
  traceId: string
): Promise<ITraceEvent[]> {
  // an auditor's views of a trace she took no part in are recorded in it
  // (`trail.accessed`), after the panel loaded it: those are left out here
  const events = (await apiEvents(page, traceId)).filter(
    e => e.kind !== 'trail.accessed'
  );
  await expect(panel.locator('.jp-AuditTrail-end')).toBeVisible();
  const cellMsgs = new Set(
    events
      .filter(e => e.kind.startsWith('cell.') && e.kind !== 'cell.unreported')
      .map(e => e.msg_id)
  );
  for (const event of events) {
    if (event.msg_id && cellMsgs.has(event.msg_id)) {
      const cell = panel.locator(
        `.jp-AuditTrail-cell[data-msg-id=${JSON.stringify(event.msg_id)}]`
      );
      await expect(cell).toHaveCount(1);
      if (event.kind === 'cell.requested') {
        const head = cell.locator('.jp-AuditTrail-cellHead');
        await expect(head.locator('.jp-AuditTrail-summary')).toHaveText(
          expectedSummary(event)
        );
        await expect(head.locator('.jp-AuditTrail-who')).toHaveText(
          expectedWho(event)
        );
        await expect(head.locator('.jp-AuditTrail-time')).not.toBeEmpty();
      } else if (!event.kind.startsWith('cell.')) {
        const op = cell.locator(`.jp-AuditTrail-op[data-seq="${event.seq}"]`);
        await expect(op.locator('.jp-AuditTrail-summary')).toHaveText(
          expectedSummary(event)
        );
        await expect(op.locator('.jp-AuditTrail-seq').first()).toHaveText(
          `#${event.seq}`
        );
      }
      continue;
    }
    const row = panel.locator(
      `.jp-AuditTrail-step[data-seq="${event.seq}"] > .jp-AuditTrail-event`
    );
    await expect(row.locator('.jp-AuditTrail-seq')).toHaveText(`#${event.seq}`);
    await expect(row.locator('.jp-AuditTrail-kind')).toHaveText(event.kind);
    await expect(row.locator('.jp-AuditTrail-who')).toHaveText(
      expectedWho(event)
    );
    await expect(row.locator('.jp-AuditTrail-summary')).toHaveText(
      expectedSummary(event)
    );
  }
  return events;
}

useRealServerAndFailOnDialogs();

test.describe('Audit trail panel', () => {
  test('opens from the sidebar icon and shows the user and the traces', async ({
    page
  }) => {
    const tab = page.sidebar.getTabLocator(PANEL_ID);
    await expect(tab.locator('svg')).toHaveCount(1);
    await expect(tab).toHaveAttribute('title', 'Audit trail');

    const panel = await openPanel(page);
    expect(await page.sidebar.isTabOpen(PANEL_ID)).toBe(true);
    await expect(panel.locator('.jp-AuditTrail-title')).toHaveText(
      'Audit trail'
    );

    const me = await api<IMe>(page, 'me');
    await expect(panel.locator('.jp-AuditTrail-userName')).toHaveText(
      me.display_name || me.username
    );
    if (me.identity?.auth_method) {
      await expect(panel.locator('.jp-AuditTrail-authMethod')).toHaveText(
        `via ${me.identity.auth_method}`
      );
    }
    await expect(panel.locator('.jp-AuditTrail-role')).toHaveText(me.roles);
    await expect(panel.locator('.jp-AuditTrail-integrityAlert')).toHaveCount(
      me.trail.integrity.ok ? 0 : 1
    );

    const traces = await apiTraces(page);
    expect(traces.length).toBeGreaterThan(0);
    const items = panel.locator('.jp-AuditTrail-trace');
    await expect(items).toHaveCount(traces.length);
    for (const [i, trace] of traces.entries()) {
      const item = items.nth(i); // newest first
      await expect(item).toHaveAttribute('data-trace-id', trace.trace_id);
      await expect(item.locator('.jp-AuditTrail-notebook')).toHaveText(
        trace.notebook ?? '(no notebook)'
      );
      await expect(item.locator('.jp-AuditTrail-traceUsers')).toHaveText(
        participantsText(trace)
      );
      await expect(item.locator('.jp-AuditTrail-status')).toHaveText(
        trace.status
      );
      await expect(item.locator('.jp-AuditTrail-started')).not.toBeEmpty();
      await expect(item.locator('.jp-AuditTrail-counts')).toContainText(
        `${trace.events} event`
      );
    }
    // The demo trail has a trace run by more than one identity.
    expect(traces.some(trace => trace.users.length > 1)).toBe(true);
  });

  test('the command palette opens the panel', async ({ page }) => {
    await page.keyboard.press('Control+Shift+C');
    const input = page.locator('.lm-CommandPalette-input');
    await expect(input).toBeVisible();
    await input.fill('Open audit trail');
    const item = page.locator('.lm-CommandPalette-item', {
      hasText: 'Open audit trail'
    });
    await expect(item).toBeVisible();
    await item.click();
    await expect(panelLocator(page)).toBeVisible();
    expect(await page.sidebar.isTabOpen(PANEL_ID)).toBe(true);
  });

  test('clicking a trace shows its timeline, back returns to the list', async ({
    page
  }) => {
    const panel = await openPanel(page);
    // The demo's traces (review.spec.ts pages through the long ones).
    const traces = (await apiTraces(page)).filter(t => t.events < 200);

    // Every trace's timeline, and every kind of summary the demo data has.
    const seenKinds = new Set<string>();
    for (const trace of traces) {
      await traceButton(panel, trace.trace_id).click();
      await expect(panel.locator('.jp-AuditTrail-traceList')).toHaveCount(0);
      await expect(
        panel.locator('.jp-AuditTrail-traceInfo .jp-AuditTrail-notebook')
      ).toHaveText(trace.notebook ?? '(no notebook)');
      const events = await checkTimeline(page, panel, trace.trace_id);
      events.forEach(event => seenKinds.add(event.kind));

      await panel.locator('.jp-AuditTrail-back').click();
      await expect(panel.locator('.jp-AuditTrail-timeline')).toHaveCount(0);
      await expect(traceButton(panel, trace.trace_id)).toBeVisible();
    }
    for (const kind of ['op.sql', 'op.http', 'op.shell']) {
      expect(seenKinds, `the demo trail has ${kind} events`).toContain(kind);
    }
    expect([...seenKinds].some(kind => kind.startsWith('cell.'))).toBe(true);
  });

  test('the server’s own events read as the server’s, not a participant', async ({
    page
  }) => {
    const panel = await openPanel(page);
    const traces = await apiTraces(page);
    // The demo trail has a trace the server ended at shutdown.
    let found: { trace: ITraceSummary; event: ITraceEvent } | null = null;
    for (const trace of traces) {
      const events = await apiEvents(page, trace.trace_id);
      const event = events.find(e => e.identity?.auth_method === 'system');
      if (event) {
        found = { trace, event };
        break;
      }
    }
    expect(
      found,
      'the demo trail has a server event in a trace'
    ).not.toBeNull();
    const { trace, event } = found!;
    const account = event.identity!.username;
    const label = `jupyter-audit server (${account})`;
    expect(event.identity!.display_name).toBe(label);
    // participants are people: the server's account is not listed
    expect(trace.users).not.toContain(account);
    expect(trace.users.length).toBeGreaterThan(0);
    await expect(
      traceButton(panel, trace.trace_id).locator('.jp-AuditTrail-traceUsers')
    ).toHaveText(participantsText(trace));

    await traceButton(panel, trace.trace_id).click();
    await expect(
      panel.locator('.jp-AuditTrail-traceInfo .jp-AuditTrail-traceUsers')
    ).toHaveText(participantsText(trace));
    const row = panel.locator(
      `.jp-AuditTrail-event[data-seq="${event.seq}"] .jp-AuditTrail-who`
    );
    await expect(row).toHaveText(label);
    await expect(row).toHaveClass(/jp-mod-system/);
    // a person's row is shown by username, without the server's mark
    const person = panel
      .locator('.jp-AuditTrail-who:not(.jp-mod-system)')
      .first();
    await expect(person).toHaveText(trace.users[0]);
  });

  test('a notebook name with HTML renders as literal text', async ({
    page
  }) => {
    const traces = await apiTraces(page);
    const hostile = traces.find(trace => trace.notebook === XSS_NOTEBOOK);
    expect(
      hostile,
      `the demo trail has a trace named ${XSS_NOTEBOOK}`
    ).toBeDefined();

    const panel = await openPanel(page);
    const item = traceButton(panel, hostile!.trace_id);
    await expect(item.locator('.jp-AuditTrail-notebook')).toHaveText(
      XSS_NOTEBOOK
    );
    await expect(panel.getByText(XSS_NOTEBOOK, { exact: true })).toHaveCount(1);
    // The markup stayed text: no element was created from it.
    await expect(panel.locator('img')).toHaveCount(0);
    expect(
      await page.evaluate(
        () => document.querySelectorAll('img[src="x"]').length
      )
    ).toBe(0);

    await item.click();
    await expect(
      panel.locator('.jp-AuditTrail-traceInfo .jp-AuditTrail-notebook')
    ).toHaveText(XSS_NOTEBOOK);
    await checkTimeline(page, panel, hostile!.trace_id);
    await expect(panel.locator('img')).toHaveCount(0);

    // The cell's code in the detail pane goes through the syntax highlighter:
    // still text, no element made from it.
    await panel.locator('.jp-AuditTrail-cellHead').first().click();
    const code = panel.locator('.jp-AuditTrail-detail .jp-AuditTrail-code');
    await expect(code).toHaveText("<script>alert('x')</script>");
    await expect(panel.locator('script')).toHaveCount(0);
    await panel.locator('.jp-AuditTrail-opHead').first().click();
    await expect(
      panel.locator('.jp-AuditTrail-detail .jp-AuditTrail-code')
    ).toContainText("DELETE FROM payments WHERE card = '");

    // Give a would-be onerror handler time to fire; afterEach checks dialogs.
    await page.waitForTimeout(500);
  });

  test('server errors show the server message, never a stack trace', async ({
    page
  }) => {
    // The real server answers unless a step below asks for a failure.
    let tracesFailure: { status: number; body: unknown } | null = {
      status: 403,
      body: { code: 'forbidden', message: 'reviewers only' }
    };
    let brokenIntegrity = false;
    await page.route('**/jupyter-audit/api/traces?*', async route => {
      if (tracesFailure) {
        await route.fulfill({
          status: tracesFailure.status,
          contentType: 'application/json',
          body: JSON.stringify(tracesFailure.body)
        });
      } else {
        await route.continue();
      }
    });
    await page.route('**/jupyter-audit/api/me?*', async route => {
      if (!brokenIntegrity) {
        return route.continue();
      }
      const response = await route.fetch();
      const me = await response.json();
      me.trail.integrity = {
        ok: false,
        first_bad_seq: 7,
        problem: 'hash mismatch <b>edited</b>',
        checked_at: new Date().toISOString()
      };
      await route.fulfill({ response, json: me });
    });
    const refresh = async (): Promise<void> => {
      const answered = page.waitForResponse(r =>
        r.url().includes('/jupyter-audit/api/traces?')
      );
      await panel.locator('.jp-AuditTrail-refresh').first().click();
      await answered;
    };

    await page.sidebar.getTabLocator(PANEL_ID).click();
    const panel = panelLocator(page);
    const error = panel.locator('.jp-AuditTrail-error');
    await expect(error).toHaveText(
      'Your account lacks the role to see this (reviewers only)'
    );

    tracesFailure = {
      status: 500,
      body: {
        message: 'the trail is locked by another process',
        traceback: 'Traceback (most recent call last):\n  File "x.py"'
      }
    };
    await refresh();
    await expect(error).toHaveText('the trail is locked by another process');
    await expect(panel).not.toContainText('Traceback');

    // Not even an HTML error page leaks through: only the status text.
    tracesFailure = { status: 502, body: '<html><h1>Bad gateway</h1></html>' };
    await refresh();
    await expect(error).not.toContainText('<');
    await expect(panel.locator('h1')).toHaveCount(0);

    // A failed integrity check is impossible to miss.
    tracesFailure = null;
    brokenIntegrity = true;
    await refresh();
    const alert = panel.locator('.jp-AuditTrail-integrityAlert');
    await expect(alert).toHaveText(
      '⊘ Trail integrity check failed at record #7: hash mismatch <b>edited</b>'
    );
    await expect(panel.locator('b')).toHaveCount(0);
    const background = await alert.evaluate(
      element => getComputedStyle(element).backgroundColor
    );
    const [red, green, blue] = (background.match(/\d+/g) ?? []).map(Number);
    expect(red, `red banner, got ${background}`).toBeGreaterThan(150);
    expect(green).toBeLessThan(120);
    expect(blue).toBeLessThan(120);
    // The list recovered once the server answered again.
    await expect(error).toHaveCount(0);
    await expect(panel.locator('.jp-AuditTrail-trace').first()).toBeVisible();
  });

  test('refreshes on demand and every 10 s while visible', async ({ page }) => {
    const panel = await openPanel(page);

    const onClick = page.waitForRequest(r =>
      r.url().includes('/jupyter-audit/api/traces?')
    );
    await panel.locator('.jp-AuditTrail-refresh').first().click();
    await onClick;

    const started = Date.now();
    await page.waitForRequest(
      r => r.url().includes('/jupyter-audit/api/traces?'),
      { timeout: 15000 }
    );
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThan(8000);

    // Collapsed: no more polling.
    await page.sidebar.close('left');
    let polled = false;
    const listener = (r: { url(): string }) => {
      if (r.url().includes('/jupyter-audit/api/traces?')) {
        polled = true;
      }
    };
    page.on('request', listener);
    await page.waitForTimeout(12000);
    page.off('request', listener);
    expect(polled).toBe(false);
  });
});
