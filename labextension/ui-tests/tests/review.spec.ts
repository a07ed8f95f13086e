/**
 * A reviewer's questions answered in the panel, against the real server and
 * real kernels: cells with queries run in a notebook and found by search, a
 * failed cell and a bulk DELETE flagged, 2,000 repeats folded, a 20,000-event
 * trace paged to its end, a tampered copy of the trail with its broken record
 * marked (a second server, started here), keyboard use, export, and the one
 * message shown without the server extension. Expected values come from the
 * REST API (contract /tmp/api-i15.md, types in ../../src/tokens.ts).
 */
import { expect, test } from '@jupyterlab/galata';
import type { IJupyterLabPageFixture } from '@jupyterlab/galata';
import type { Locator, Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

import type {
  IMe,
  ITraceDetail,
  ITraceList,
  ITraceSummary
} from '../../src/tokens';

import {
  DOCS_DIR,
  PANEL_ID,
  api,
  useRealServerAndFailOnDialogs,
  useSecondServer
} from './common';

const RUN_NOTEBOOK = 'review-run.ipynb';

/** What the spec uses of the JupyterLab application Galata exposes as `window.jupyterapp`. */
interface IApp {
  commands: { execute(id: string, args?: unknown): Promise<unknown> };
}
const CLEANUP_NOTEBOOK = 'customers-cleanup.ipynb'; // seed_review.py
const LONG_NOTEBOOK = 'long-run.ipynb'; // seed_review.py

/** A notebook whose cells query a real SQLite file, then fail. */
const CELLS = [
  {
    id: 'cell-setup',
    source:
      "import sqlite3\ncon = sqlite3.connect('gadgets.db')\n" +
      "con.execute('CREATE TABLE IF NOT EXISTS gadgets (id INTEGER, name TEXT)')\n" +
      "con.executemany('INSERT INTO gadgets VALUES (?, ?)', [(i, f'g{i}') for i in range(5)])\n" +
      'con.commit()'
  },
  {
    id: 'cell-query',
    source:
      "rows = con.execute('SELECT name FROM gadgets WHERE id < 3').fetchall()\nprint(len(rows))"
  },
  { id: 'cell-fails', source: "print('about to fail')\n1 / 0" }
];

async function openPanel(
  page: IJupyterLabPageFixture | Page
): Promise<Locator> {
  await page.locator(`.lm-TabBar-tab[data-id="${PANEL_ID}"]`).click();
  const panel = page.locator('.jp-AuditTrail-panel');
  await expect(panel).toBeVisible();
  await expect(panel.locator('.jp-AuditTrail-trace').first()).toBeVisible({
    timeout: 30_000
  });
  return panel;
}

async function findTrace(
  page: Page,
  query: string
): Promise<ITraceSummary | undefined> {
  const { traces } = await api<ITraceList>(
    page,
    `traces?limit=50&notebook=${encodeURIComponent(query)}`
  );
  return traces.find(t => t.notebook === query);
}

function card(panel: Locator, traceId: string): Locator {
  return panel.locator(
    `.jp-AuditTrail-trace[data-trace-id=${JSON.stringify(traceId)}]`
  );
}

/** Search the list and open the trace the search found. */
async function searchAndOpen(
  panel: Locator,
  query: string,
  traceId: string
): Promise<void> {
  await panel.locator('.jp-AuditTrail-search').fill(query);
  await panel.locator('.jp-AuditTrail-search').press('Enter');
  await expect(card(panel, traceId)).toBeVisible({ timeout: 30_000 });
  await card(panel, traceId).click();
  await expect(panel.locator('.jp-AuditTrail-timeline')).toBeVisible();
}

useRealServerAndFailOnDialogs();

test.describe('Reviewing traces', () => {
  test('cells with queries run in a notebook are found by search and their queries open', async ({
    page,
    tmpPath
  }) => {
    test.setTimeout(240_000);
    const content = {
      cells: CELLS.map(c => ({
        cell_type: 'code',
        id: c.id,
        source: c.source,
        metadata: {},
        outputs: [],
        execution_count: null
      })),
      metadata: { kernelspec: { name: 'python3', display_name: 'Python 3' } },
      nbformat: 4,
      nbformat_minor: 5
    };
    const notebookPath = `${tmpPath}/${RUN_NOTEBOOK}`;
    const put = await page.request.put(`/api/contents/${notebookPath}`, {
      data: { type: 'notebook', format: 'json', content }
    });
    expect(put.ok()).toBe(true);
    await page.evaluate(async p => {
      const app = (window as unknown as { jupyterapp: IApp }).jupyterapp;
      await app.commands.execute('docmanager:open', { path: p });
    }, notebookPath);
    await expect(
      page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator')
    ).toHaveAttribute('data-status', 'idle', { timeout: 60_000 });
    expect(await page.notebook.activate(RUN_NOTEBOOK)).toBe(true);
    await page.notebook.run();
    await expect(
      page.locator('.jp-NotebookPanel .jp-OutputArea-output', {
        hasText: 'ZeroDivisionError'
      })
    ).toBeVisible({ timeout: 60_000 });

    // the trail has the run once the kernel's records arrived
    let trace: ITraceSummary | undefined;
    await expect(async () => {
      trace = await findTrace(page, notebookPath);
      expect(trace).toBeDefined();
      const { events } = await api<ITraceDetail>(
        page,
        `traces/${trace!.trace_id}?fold=0&limit=5000`
      );
      expect(events.filter(e => e.kind === 'cell.finished')).toHaveLength(3);
      expect(events.some(e => e.kind === 'op.sql')).toBe(true);
    }).toPass({ timeout: 60_000 });

    const panel = await openPanel(page);
    await searchAndOpen(panel, 'gadgets WHERE', trace!.trace_id);

    // the query is nested under the cell that ran it, with who and when
    const cell = panel.locator('.jp-AuditTrail-cell', {
      hasText: "rows = con.execute('SELECT name FROM gadgets"
    });
    await expect(cell.locator('.jp-AuditTrail-who').first()).toHaveText('rita');
    const query = cell.locator('.jp-AuditTrail-op', {
      hasText: 'SELECT name FROM gadgets WHERE id < 3'
    });
    await expect(query).toHaveCount(1);
    await expect(query.locator('.jp-AuditTrail-kind')).toHaveText('SQL');
    await query.locator('.jp-AuditTrail-opHead').click();
    const detail = query.locator('.jp-AuditTrail-detail');
    await expect(detail).toContainText('op.sql');
    await expect(detail.locator('.jp-AuditTrail-code')).toHaveText(
      'SELECT name FROM gadgets WHERE id < 3'
    );
    // JupyterLab's highlighter marked it up: spans it made, not HTML from the trail
    await expect(
      detail.locator('.jp-AuditTrail-code span').first()
    ).toBeVisible();

    // the failed cell is marked with the kernel's error
    const failed = panel.locator('.jp-AuditTrail-cell.jp-mod-failed');
    await expect(failed).toHaveCount(1);
    await expect(failed).toContainText('ZeroDivisionError');

    await page.sidebar.setWidth(420);
    fs.mkdirSync(DOCS_DIR, { recursive: true });
    await panel.screenshot({ path: path.join(DOCS_DIR, 'panel-detail.png') });

    // "open notebook at this cell" activates the cell that ran the query
    await cell.locator('.jp-AuditTrail-cellHead').click();
    await cell.locator('.jp-AuditTrail-openCell').click();
    await expect(
      page.locator('.jp-NotebookPanel .jp-Cell.jp-mod-active')
    ).toContainText('SELECT name FROM gadgets');
  });

  test('a failed cell and a bulk DELETE are flagged; 2,000 repeats fold into one row', async ({
    page
  }) => {
    const trace = await findTrace(page, CLEANUP_NOTEBOOK);
    expect(trace, 'seed_review.py seeded it').toBeDefined();
    expect(trace!.flags).toEqual(
      expect.arrayContaining(['failed_cells', 'risky'])
    );
    const panel = await openPanel(page);
    await searchAndOpen(panel, 'DELETE FROM customers', trace!.trace_id);
    await panel.locator('.jp-AuditTrail-back').click();
    const item = card(panel, trace!.trace_id);
    await expect(item.locator('[data-flag="failed_cells"]')).toHaveText(
      '✖1 failed cell'
    );
    await expect(item.locator('[data-flag="risky"]')).toContainText('risky');
    await expect(item.locator('.jp-AuditTrail-counts')).toContainText(
      'queries'
    );
    await page.sidebar.setWidth(420);
    await panel.screenshot({ path: path.join(DOCS_DIR, 'panel-traces.png') });

    await item.click();
    const failed = panel.locator('.jp-AuditTrail-cell.jp-mod-failed');
    await expect(failed).toContainText(
      "NameError: name 'model' is not defined"
    );
    const del = panel.locator('.jp-AuditTrail-op', {
      hasText: 'DELETE FROM customers'
    });
    await expect(del).toHaveClass(/jp-mod-risky/);
    await expect(del.locator('.jp-AuditTrail-opFacts')).toContainText(
      'rows 50'
    );

    // 2,000 identical statements: one row with the count, expandable
    const repeat = panel.locator('.jp-AuditTrail-repeat');
    await expect(repeat).toHaveText('×2000: show each');
    await panel.screenshot({ path: path.join(DOCS_DIR, 'panel-timeline.png') });
    await repeat.click();
    await expect(panel.locator('.jp-AuditTrail-repeatRow')).toHaveCount(2000, {
      timeout: 30_000
    });
    await repeat.click();
    await expect(panel.locator('.jp-AuditTrail-repeatRow')).toHaveCount(0);
  });

  test('pages through a 20,000-event trace to its end', async ({ page }) => {
    test.setTimeout(300_000);
    const trace = await findTrace(page, LONG_NOTEBOOK);
    expect(trace, 'seed_review.py seeded it').toBeDefined();
    // the trace's last step (an auditor's views of it, `trail.accessed`, are
    // recorded in it as she reads: not steps, and they come after)
    const last = await api<ITraceDetail>(
      page,
      `traces/${trace!.trace_id}?page=last&limit=20&fold=0&kind=op.sql`
    );
    expect(last.total).toBeGreaterThanOrEqual(20000);

    const panel = await openPanel(page);
    await searchAndOpen(panel, LONG_NOTEBOOK, trace!.trace_id);
    const end = panel.locator('.jp-AuditTrail-end');
    let pages = 0;
    // scrolling to the bottom loads the next page, until the end
    while (!(await end.isVisible())) {
      const more = panel.locator('.jp-AuditTrail-more');
      await more.scrollIntoViewIfNeeded();
      const before = await panel
        .locator('.jp-AuditTrail-op')
        .last()
        .getAttribute('data-seq');
      await expect
        .poll(
          async () =>
            (await end.isVisible()) ||
            (await panel
              .locator('.jp-AuditTrail-op')
              .last()
              .getAttribute('data-seq')) !== before,
          { timeout: 30_000 }
        )
        .toBe(true);
      pages++;
      // the page keeps a bounded number of rows however far it went
      expect(await panel.locator('.jp-AuditTrail-event').count()).toBeLessThan(
        3000
      );
    }
    expect(pages).toBeGreaterThanOrEqual(39);
    // the trace's last record is loaded, in its cell's row
    const lastEvent = last.events[last.events.length - 1];
    await expect(
      panel.locator(
        `.jp-AuditTrail-cell[data-msg-id=${JSON.stringify(lastEvent.msg_id)}]`
      )
    ).toHaveCount(1);
    await expect(panel.locator('.jp-AuditTrail-window')).toContainText(' of ');

    // and back to the start in one step
    await panel.locator('.jp-AuditTrail-jumpFirst').click();
    await expect(panel.locator('.jp-AuditTrail-loadEarlier')).toHaveCount(0);
    await expect(end).toHaveCount(0);
  });

  test('keyboard: focus moves into the opened trace, Escape closes the detail then the trace', async ({
    page
  }) => {
    const trace = await findTrace(page, CLEANUP_NOTEBOOK);
    const panel = await openPanel(page);
    const item = card(panel, trace!.trace_id);
    await item.focus();
    await page.keyboard.press('Enter');
    const heading = panel.locator('.jp-AuditTrail-timeline h3');
    await expect(heading).toBeFocused();
    const row = panel.locator('.jp-AuditTrail-cellHead').first();
    await row.focus();
    await page.keyboard.press('Enter');
    await expect(panel.locator('.jp-AuditTrail-detail')).toHaveCount(1);
    await page.keyboard.press('Escape');
    await expect(panel.locator('.jp-AuditTrail-detail')).toHaveCount(0);
    await expect(row).toBeFocused();
    await page.keyboard.press('Escape');
    await expect(panel.locator('.jp-AuditTrail-timeline')).toHaveCount(0);
    await expect(card(panel, trace!.trace_id)).toBeFocused();
  });

  test('export downloads the trace’s evidence bundle from the server', async ({
    page
  }) => {
    const trace = await findTrace(page, CLEANUP_NOTEBOOK);
    const panel = await openPanel(page);
    await card(panel, trace!.trace_id).click();
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      panel.locator('.jp-AuditTrail-traceActions .jp-AuditTrail-export').click()
    ]);
    expect(download.suggestedFilename()).toBe(
      `jupyter-audit-${trace!.trace_id}.json`
    );
    const file = await download.path();
    const bundle = JSON.parse(fs.readFileSync(file!, 'utf-8'));
    expect(JSON.stringify(bundle)).toContain(trace!.trace_id);
  });

  test('without the server extension the panel says so once', async ({
    page
  }) => {
    await page.route('**/jupyter-audit/api/**', route =>
      route.fulfill({
        status: 404,
        contentType: 'text/html',
        body: '<html><title>404: Not Found</title></html>'
      })
    );
    await page.locator(`.lm-TabBar-tab[data-id="${PANEL_ID}"]`).click();
    const panel = page.locator('.jp-AuditTrail-panel');
    await expect(panel.locator('[role="alert"]')).toHaveText(
      'The jupyter-audit server extension is not running on this server'
    );
    await expect(panel.locator('[role="alert"]')).toHaveCount(1);
    await expect(panel).not.toContainText('Not Found');
  });
});

test.describe('A tampered copy of the trail', () => {
  const port = Number(process.env.JUPYTER_AUDIT_UI_PORT || '8888') + 20;
  const url = `http://localhost:${port}`;
  useSecondServer(
    'jupyter_server_tampered_config.py',
    'JUPYTER_AUDIT_UI_TAMPERED_PORT',
    port
  );

  test('the broken record is marked in the banner, the trace card and the timeline', async ({
    page
  }) => {
    await page.goto(`${url}/lab`);
    await expect(page.locator('#jupyterlab-splash')).toHaveCount(0, {
      timeout: 60_000
    });
    const me = (await (
      await page.request.get(`${url}/jupyter-audit/api/me`)
    ).json()) as IMe;
    const integrity = me.trail.integrity;
    expect(integrity.ok).toBe(false);
    const bad = integrity.first_bad_seq!;

    const panel = await openPanel(page);
    await expect(panel.locator('.jp-AuditTrail-integrityAlert')).toContainText(
      `record #${bad}`
    );
    const list = (await (
      await page.request.get(`${url}/jupyter-audit/api/traces?limit=50`)
    ).json()) as ITraceList;
    const flagged = list.traces.filter(t =>
      (t.flags ?? []).includes('integrity')
    );
    expect(flagged).toHaveLength(1);
    const item = card(panel, flagged[0].trace_id);
    await expect(item).toHaveClass(/jp-mod-broken/);
    await expect(item.locator('[data-flag="integrity"]')).toBeVisible();

    await item.click();
    await expect(panel.locator('.jp-AuditTrail-integrityBadge')).toContainText(
      `Broken at record #${bad}`
    );
    const broken = panel.locator(`li.jp-mod-broken[data-seq="${bad}"]`);
    await expect(broken).toHaveCount(1);
    await expect(broken.locator('.jp-AuditTrail-brokenMark')).toHaveText(
      '⊘ fails verification'
    );
    await page
      .locator('.jp-SideBar')
      .first()
      .evaluate(() => undefined);
    await panel.screenshot({
      path: path.join(DOCS_DIR, 'panel-integrity.png')
    });
  });
});
