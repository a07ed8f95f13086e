/**
 * The panel reading a JupyterHub's trail: rita's own server with
 * `c.AuditApp.collector_url`, its collector (real web app and DuckDB trail,
 * only the Hub's answer for a token standing in) in the same process
 * (jupyter_server_collector_config.py, a second server started here). The
 * panel says it reads the Hub's trail, lists the traces of every server for an
 * auditor with the server that recorded each, escapes bob's hostile notebook
 * name, opens bob's trace, and its roles are the collector's. Expected values
 * come from the REST API. Screenshot: docs/panel-collector.png.
 */
import { expect, test } from '@jupyterlab/galata';
import type { Locator, Page } from '@playwright/test';
import * as path from 'path';

import type { IMe, ITraceList } from '../../src/tokens';

import {
  DOCS_DIR,
  PANEL_ID,
  useRealServerAndFailOnDialogs,
  useSecondServer
} from './common';

useRealServerAndFailOnDialogs();

const port = Number(process.env.JUPYTER_AUDIT_UI_PORT || '8888') + 30;
const url = `http://localhost:${port}`;
useSecondServer(
  'jupyter_server_collector_config.py',
  'JUPYTER_AUDIT_UI_COLLECTOR_PORT',
  port
);

async function get<T>(page: Page, endPoint: string): Promise<T> {
  const response = await page.request.get(
    `${url}/jupyter-audit/api/${endPoint}`
  );
  expect(response.status(), `GET ${endPoint}`).toBe(200);
  return (await response.json()) as T;
}

async function openPanel(page: Page): Promise<Locator> {
  await page.goto(`${url}/lab`);
  await expect(page.locator('#jupyterlab-splash')).toHaveCount(0, {
    timeout: 60_000
  });
  await page.locator(`.lm-TabBar-tab[data-id="${PANEL_ID}"]`).click();
  const panel = page.locator('.jp-AuditTrail-panel');
  await expect(panel).toBeVisible();
  return panel;
}

test('the panel reads the Hub’s trail: every server for an auditor, each trace’s server named', async ({
  page
}) => {
  const me = await get<IMe>(page, 'me');
  expect(me.source).toBe('collector');
  expect(me.roles).toEqual(['user', 'auditor', 'reviewer']);
  // rita's own server forwards its trail as it runs: wait until the collector has it
  await expect
    .poll(
      async () => {
        const list = await get<ITraceList>(page, 'traces?limit=50');
        return new Set(list.traces.map(t => t.owner)).size;
      },
      { timeout: 60_000 }
    )
    .toBe(2);
  const { traces } = await get<ITraceList>(page, 'traces?limit=50');
  const bobs = traces.find(t => t.owner === 'bob')!;
  expect(bobs.server).toBe('bob/');

  const panel = await openPanel(page);
  const label = panel.locator('.jp-AuditTrail-source');
  await expect(label).toHaveText("JupyterHub's audit trail: every server");
  for (const role of me.roles) {
    await expect(
      panel.locator('.jp-AuditTrail-role', { hasText: role })
    ).toHaveCount(1);
  }
  const cards = panel.locator('.jp-AuditTrail-trace');
  await expect(cards).toHaveCount(traces.length);
  const card = panel.locator(
    `.jp-AuditTrail-trace[data-trace-id="${bobs.trace_id}"]`
  );
  await expect(card.locator('.jp-AuditTrail-recordedBy')).toHaveText(
    'recorded by server bob/'
  );
  // bob's notebook name is markup: shown as text, never as an element
  await expect(card).toContainText(
    '<img src=x onerror=alert(1)> bob-forecast.ipynb'
  );
  await expect(panel.locator('img')).toHaveCount(0);
  await expect(
    panel.locator('.jp-AuditTrail-recordedBy', { hasText: 'rita/' })
  ).toHaveCount(traces.length - 1);
  await panel.screenshot({ path: path.join(DOCS_DIR, 'panel-collector.png') });

  // bob's trace opens from the collector, its SQL shown
  await card.click();
  await expect(panel).toContainText('SELECT * FROM sales', { timeout: 30_000 });
});
