/**
 * The pending-approvals view in a real JupyterLab and Chromium, against the
 * real server: requests are made by real kernels (started over the real
 * websocket by run_cell.py), attributed by the server to the identity that
 * runs the cell, and decided in the panel by the browser's user, rita (a
 * reviewer; see jupyter_server_test_config.py).
 */
import { expect, test } from '@jupyterlab/galata';
import type { IJupyterLabPageFixture } from '@jupyterlab/galata';
import type { Locator, Page } from '@playwright/test';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import type { IApproval, IApprovalList } from '../../src/tokens';

import {
  DOCS_DIR,
  PANEL_ID,
  api,
  useRealServerAndFailOnDialogs
} from './common';

const RUN_CELL = path.resolve(__dirname, '..', 'run_cell.py');
const PORT = process.env.JUPYTER_AUDIT_UI_PORT || '8888';
const BASE_URL = `http://localhost:${PORT}`;

interface ICellResult {
  kernel_id?: string;
  status: string;
  output: string;
  errors: unknown[];
}

/**
 * Run `code` in a new kernel as the owner of `token` (rita without one),
 * over the kernel websocket; resolves when the cell has finished.
 */
function runCell(code: string, token = ''): Promise<ICellResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('python', [RUN_CELL, BASE_URL, token], {
      stdio: ['pipe', 'pipe', 'pipe']
    });
    let out = '';
    // Never outlive the test: a cell that hangs fails it instead.
    const timer = setTimeout(() => child.kill('SIGTERM'), 120_000);
    let err = '';
    child.stdout.on('data', chunk => (out += chunk));
    child.stderr.on('data', chunk => (err += chunk));
    child.on('error', reject);
    child.on('close', code => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as ICellResult);
      } catch {
        resolve({ status: `exit ${code}`, output: out, errors: [err] });
      }
    });
    child.stdin.end(code);
  });
}

/**
 * A cell that runs `statement` on a fresh two-row SQLite table through the
 * captured driver: the kernel side holds a risky statement until it is
 * decided. Prints what happened and the rows left.
 */
function riskyCell(statement: string, params?: unknown[]): string {
  const args = params
    ? `${JSON.stringify(statement)}, ${JSON.stringify(params)}`
    : JSON.stringify(statement);
  return `
import os, sqlite3, tempfile
con = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "shop.db"))
con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
con.executemany("INSERT INTO customers VALUES (?, ?)", [(1, "ada"), (2, "bob")])
con.commit()
try:
    con.execute(${args})
    con.commit()
    print("state: ran")
except KeyboardInterrupt:
    print("state: interrupted")
except Exception as e:
    print("state:", type(e).__name__, e)
print("rows left:", con.execute("SELECT count(*) FROM customers").fetchone()[0])
`;
}

/** The pending request whose statement is `statement`, once it exists. */
async function pendingRequest(
  page: Page,
  statement: string
): Promise<IApproval> {
  let found: IApproval | undefined;
  await expect
    .poll(
      async () => {
        const { approvals } = await api<IApprovalList>(
          page,
          'approvals?state=pending'
        );
        found = approvals.find(a => a.statement === statement);
        return found !== undefined;
      },
      { timeout: 60_000 }
    )
    .toBe(true);
  return found!;
}

async function openPanel(page: IJupyterLabPageFixture): Promise<Locator> {
  await page.sidebar.getTabLocator(PANEL_ID).click();
  const panel = page.locator('.jp-AuditTrail-panel');
  await expect(panel).toBeVisible();
  return panel;
}

function card(panel: Locator, id: number): Locator {
  return panel.locator(`.jp-AuditTrail-approval[data-approval-id="${id}"]`);
}

useRealServerAndFailOnDialogs();

test.describe('Pending approvals', () => {
  test('a reviewer approves in the panel and the waiting cell continues', async ({
    page
  }) => {
    // The requester: a service account whose owner is someone else (carol),
    // created by carol (an admin) through the tokens API: a token's creator
    // counts as its requester, so rita could not approve one she made.
    const created = await page.request.post('/jupyter-audit/api/tokens', {
      headers: { 'X-UITest-User': 'carol' },
      data: {
        service_account: 'etl-bot',
        owner: 'carol@example.org',
        expires: '1d'
      }
    });
    expect(created.status()).toBe(201);
    const { token } = (await created.json()) as { token: string };

    const statement = 'DELETE FROM customers';
    const cell = runCell(riskyCell(statement), token);
    const request = await pendingRequest(page, statement);
    expect(request.requester).toBe('etl-bot');

    // The closed panel's tab says that requests wait (checked again when the
    // browser window regains focus).
    const tab = page.sidebar.getTabLocator(PANEL_ID);
    await page.evaluate(() => window.dispatchEvent(new Event('focus')));
    await expect(tab).toHaveAttribute('data-audit-pending', /^[1-9][0-9]*$/);

    const panel = await openPanel(page);
    const item = card(panel, request.id);
    await expect(item).toBeVisible();
    await expect(item.locator('.jp-AuditTrail-approvalRequester')).toHaveText(
      'asked by etl-bot'
    );
    await expect(item.locator('.jp-AuditTrail-approvalStatement')).toHaveText(
      statement
    );
    for (const reason of request.reasons) {
      await expect(
        item.locator('.jp-AuditTrail-ruleId', { hasText: reason.rule })
      ).toBeVisible();
      await expect(
        item.locator('.jp-AuditTrail-ruleMessage', { hasText: reason.message })
      ).toBeVisible();
    }
    expect(request.rules.length).toBeGreaterThan(0);
    await expect(item.locator('.jp-AuditTrail-approvalAsked')).toHaveAttribute(
      'datetime',
      request.requested_at
    );
    await expect(
      item.locator('.jp-AuditTrail-approvalExpires')
    ).toHaveAttribute('datetime', request.expires_at);
    await item.screenshot({
      path: path.join(DOCS_DIR, 'panel-approvals.png')
    });
    expect(fs.existsSync(path.join(DOCS_DIR, 'panel-approvals.png'))).toBe(
      true
    );

    // The cell's code, behind a keyboard-operable disclosure.
    await item.locator('.jp-AuditTrail-approvalCell summary').focus();
    await page.keyboard.press('Enter');
    await expect(item.locator('.jp-AuditTrail-approvalCode')).toContainText(
      'con.execute("DELETE FROM customers")'
    );

    // A denial without a reason is not sent.
    let posts = 0;
    page.on('request', r => {
      if (r.method() === 'POST' && r.url().includes('/api/approvals/')) {
        posts++;
      }
    });
    await item.locator('.jp-AuditTrail-deny').click();
    await expect(item.locator('.jp-AuditTrail-approvalOutcome')).toHaveText(
      'A denial needs a reason.'
    );
    expect(posts).toBe(0);

    // Approve with the keyboard: type the reason, tab to Approve, press Enter.
    await item.locator('.jp-AuditTrail-reason').fill('checked with carol');
    await item.locator('.jp-AuditTrail-reason').focus();
    await page.keyboard.press('Tab');
    await expect(item.locator('.jp-AuditTrail-approve')).toBeFocused();
    await page.keyboard.press('Enter');

    const result = await cell;
    expect(result.status, JSON.stringify(result)).toBe('ok');
    expect(result.output).toContain('state: ran');
    expect(result.output).toContain('rows left: 0');

    // Nothing waits any more: the tab's count is gone.
    await expect(tab).not.toHaveAttribute('data-audit-pending', /.*/);

    // The request left the pending list and shows what the server holds now.
    const decided = panel.locator(
      `.jp-mod-decided .jp-AuditTrail-approval[data-approval-id="${request.id}"]`
    );
    await expect(decided).toBeVisible();
    await expect(
      decided.locator('.jp-AuditTrail-approvalDecision')
    ).toContainText('approved by rita');
    await expect(
      decided.locator('.jp-AuditTrail-approvalDecision')
    ).toContainText('checked with carol');
    await page.locator('.jp-AuditTrail-refresh').click();
    await expect(decided.locator('.jp-AuditTrail-approvalState')).toHaveText(
      /approved|executed/
    );
    // The kernel reported the execution: the trail holds all three steps.
    await expect
      .poll(
        async () =>
          (await api<IApproval>(page, `approvals/${request.id}`)).state,
        { timeout: 30_000 }
      )
      .toBe('executed');
    const after = await api<IApproval>(page, `approvals/${request.id}`);
    expect(after.decisions.map(d => [d.reviewer, d.decision])).toEqual([
      ['rita', 'approve']
    ]);
  });

  test('the parameters show masked, as text', async ({ page }) => {
    const statement = 'UPDATE customers SET name = ?';
    const secret = '<img src=x onerror=alert(1)> jane.doe@example.com';
    const cell = runCell(riskyCell(statement, [secret]));
    const request = await pendingRequest(page, statement);
    expect(JSON.stringify(request.params)).not.toContain(
      'jane.doe@example.com'
    );

    const panel = await openPanel(page);
    const item = card(panel, request.id);
    const shown = item.locator('.jp-AuditTrail-approvalParams');
    await expect(shown).toHaveText(JSON.stringify(request.params));
    await expect(shown).not.toContainText('jane.doe@example.com');
    await expect(panel.locator('img')).toHaveCount(0);

    const interrupted = await page.request.post(
      `/api/kernels/${request.kernel_id}/interrupt`
    );
    expect(interrupted.status()).toBe(204);
    expect((await cell).output).toContain('state: interrupted');
  });

  test("approving one's own request shows the server's refusal; HTML stays text", async ({
    page
  }) => {
    const statement =
      'DROP TABLE customers /* <img src=x onerror=alert(1)> **bold** [x](javascript:alert(2)) */';
    // rita's own cell (no service token: the browser's identity).
    const cell = runCell(riskyCell(statement));
    const request = await pendingRequest(page, statement);
    expect(request.requester).toBe('rita');

    const panel = await openPanel(page);
    const item = card(panel, request.id);
    await expect(item.locator('.jp-AuditTrail-approvalStatement')).toHaveText(
      statement
    );
    await expect(item.locator('.jp-AuditTrail-approvalOwn')).toBeVisible();
    await expect(panel.locator('img')).toHaveCount(0);
    await expect(panel.locator('a')).toHaveCount(0);
    await expect(panel.locator('strong')).toHaveCount(0);

    const answer = page.waitForResponse(
      r =>
        r.request().method() === 'POST' &&
        r.url().includes(`/jupyter-audit/api/approvals/${request.id}`)
    );
    await item.locator('.jp-AuditTrail-approve').click();
    const response = await answer;
    expect(response.status()).toBe(403);
    const { message } = (await response.json()) as { message: string };
    const refusal = item.locator('.jp-AuditTrail-approvalOutcome');
    await expect(refusal).toHaveAttribute('role', 'alert');
    await expect(refusal).toHaveText(
      `The server refused your decision: ${message}`
    );
    // Still pending: nothing was decided.
    const still = await api<IApproval>(page, `approvals/${request.id}`);
    expect(still.state).toBe('pending');

    // Interrupting the waiting cell cancels the request; the table is intact.
    const interrupted = await page.request.post(
      `/api/kernels/${request.kernel_id}/interrupt`
    );
    expect(interrupted.status()).toBe(204);
    const result = await cell;
    expect(result.output, JSON.stringify(result)).toContain(
      'state: interrupted'
    );
    expect(result.output).toContain('rows left: 2');
    await expect
      .poll(
        async () =>
          (await api<IApproval>(page, `approvals/${request.id}`)).state,
        { timeout: 30_000 }
      )
      .toBe('cancelled');
    await page.locator('.jp-AuditTrail-refresh').click();
    await expect(
      panel.locator(
        `.jp-mod-decided .jp-AuditTrail-approval[data-approval-id="${request.id}"] .jp-AuditTrail-approvalState`
      )
    ).toHaveText('cancelled');
  });
});
