/**
 * A sign-in session that ends inside an open JupyterLab, in Chromium, against
 * a JupyterLab that signs people in at a real OIDC issuer (oidc-provider-mock;
 * see jupyter_server_oidc_config.py and playwright.config.js): signed out
 * elsewhere while a notebook's kernel is connected, and expired. Each time the
 * page says "Your session has ended: sign in again", as a notification with a
 * "Sign in again" action and in the audit panel, with a link that signs in and
 * comes back to the page.
 *
 * Plain Playwright pages (Galata's fixtures expect a server without sign-in).
 */
import { expect, test } from '@playwright/test';
import type { Page } from '@playwright/test';
import * as path from 'path';

const OIDC_URL = process.env.JUPYTER_AUDIT_UI_OIDC_URL as string;
const LIFETIME = Number(process.env.JUPYTER_AUDIT_UI_SESSION_LIFETIME);
const PANEL_TAB =
  '.lm-TabBar.jp-SideBar .lm-TabBar-content li.lm-TabBar-tab[data-id="jupyter-audit:panel"]';
const ENDED = 'Your session has ended: sign in again';
const DOCS_DIR = path.resolve(__dirname, '..', '..', '..', 'docs');

test.use({ baseURL: OIDC_URL });
test.describe.configure({ mode: 'serial' });

/** Sign in at the issuer's form as alice (whichever page the server sent us to). */
async function signInAtIssuer(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'alice-sub' }).click();
}

/** Open JupyterLab through the sign-in, and wait for it to be ready. */
async function openLab(page: Page): Promise<void> {
  await page.goto('/lab');
  await expect(page).toHaveURL(/\/authorize/);
  await signInAtIssuer(page);
  await page.waitForURL(/\/lab/);
  await expect(page.locator(PANEL_TAB)).toBeVisible({ timeout: 60_000 });
}

async function openPanel(page: Page) {
  const tab = page.locator(PANEL_TAB);
  const panel = page.locator('.jp-AuditTrail-panel');
  // the workspace may restore it open meanwhile: click until it shows
  await expect(async () => {
    if (!(await panel.isVisible())) {
      await tab.click();
    }
    await expect(panel).toBeVisible({ timeout: 2000 });
  }).toPass({ timeout: 30_000 });
  return panel;
}

/** A new notebook from the launcher, its kernel connected and idle. */
async function notebookWithKernel(page: Page): Promise<void> {
  await page
    .locator('.jp-LauncherCard[data-category="Notebook"]')
    .first()
    .click();
  await expect(
    page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator')
  ).toHaveAttribute('data-status', 'idle', { timeout: 60_000 });
  // a cell that ran: the kernel websocket is open. Typing into a notebook that
  // is still settling can be lost on a slow machine, so the cell's text is
  // checked before it runs, and it runs in place (Ctrl+Enter) so a retry runs
  // the same cell again.
  const cell = page.locator('.jp-NotebookPanel .jp-Cell').first();
  const editor = cell.locator('.cm-content');
  const output = page
    .locator('.jp-NotebookPanel .jp-OutputArea-output')
    .first();
  await expect(async () => {
    await editor.click();
    await page.keyboard.press('ControlOrMeta+a');
    await page.keyboard.type('6 * 7');
    await expect(editor).toHaveText('6 * 7', { timeout: 2000 });
    await page.keyboard.press('Control+Enter');
    await expect(output).toHaveText('42', { timeout: 20_000 });
  }).toPass({ timeout: 90_000 });
}

function notification(page: Page) {
  return page.locator('.jp-Notification-Toast-warning', { hasText: ENDED });
}

/**
 * JupyterLab's own dialogs that say the session has ended (e.g. "Error
 * Starting Kernel" when it tries to start a kernel) are dismissed; any other
 * dialog (a bare "Forbidden", "Kernel died unexpectedly") stays and fails the
 * test at the next click.
 */
async function dismissSessionDialogs(page: Page): Promise<void> {
  await page.addLocatorHandler(
    page.locator('.jp-Dialog', { hasText: ENDED }),
    async dialog => {
      await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
    }
  );
}

test('signed out elsewhere: the kernel connection says sign in again, and signing in comes back', async ({
  page
}) => {
  test.setTimeout(300_000);
  await dismissSessionDialogs(page);
  await openLab(page);
  await notebookWithKernel(page);
  const here = new URL(page.url()).pathname;
  const me = await page.request.get('/jupyter-audit/api/me');
  expect(((await me.json()) as { username: string }).username).toBe('alice');

  // signed out in another tab: the server ends the session and closes its
  // kernel websocket; the panel is closed, so the kernel connection tells
  const out = await page.request.get('/logout', { maxRedirects: 0 });
  expect(out.status()).toBe(302);
  await expect(notification(page)).toBeVisible({ timeout: 30_000 });

  // the panel says so too, with a link back here, and no longer shows alice
  const panel = await openPanel(page);
  const ended = panel.locator('.jp-AuditTrail-sessionEnded');
  await expect(ended).toContainText(ENDED);
  await expect(ended).toContainText('You signed out');
  await expect(panel.locator('.jp-AuditTrail-userName')).toHaveCount(0);
  const href = await ended
    .locator('a.jp-AuditTrail-signIn')
    .getAttribute('href');
  expect(href).toBe(`/login?next=${encodeURIComponent(here)}`);

  // "Sign in again" in the notification: the issuer, then back to this page
  await notification(page)
    .getByRole('button', { name: 'Sign in again' })
    .click();
  await signInAtIssuer(page);
  await page.waitForURL(url => url.pathname === here);
  const again = await openPanel(page);
  await expect(again.locator('.jp-AuditTrail-userName')).toHaveText('alice', {
    timeout: 30_000
  });
  await expect(again.locator('.jp-AuditTrail-sessionEnded')).toHaveCount(0);
  await expect(page.locator('.jp-Dialog')).toHaveCount(0);
});

test('the session expires: the panel and a notification say sign in again', async ({
  page
}) => {
  test.setTimeout((LIFETIME + 120) * 1000);
  await openLab(page);
  const panel = await openPanel(page);
  await expect(panel.locator('.jp-AuditTrail-userName')).toHaveText('alice', {
    timeout: 30_000
  });
  // nothing to do but wait: the page checks again when the session's time is up
  await expect(notification(page)).toBeVisible({
    timeout: (LIFETIME + 30) * 1000
  });
  const ended = panel.locator('.jp-AuditTrail-sessionEnded');
  await expect(ended).toContainText(ENDED);
  await expect(ended).toContainText('Your sign-in expired');
  await expect(panel.locator('.jp-AuditTrail-userName')).toHaveCount(0);
  await expect(ended.locator('a.jp-AuditTrail-signIn')).toHaveAttribute(
    'href',
    /^\/login\?next=%2Flab/
  );
  await page.screenshot({
    path: path.join(DOCS_DIR, 'panel-session-ended.png')
  });
});
