/**
 * What every spec of the panel shares: the panel's id, where screenshots go,
 * a GET on the real audit API, and the page set-up (the real server behind
 * /jupyter-audit/api/me, and no dialog ever).
 */
import { expect, test } from '@jupyterlab/galata';
import type { Page } from '@playwright/test';
import * as path from 'path';

export const PANEL_ID = 'jupyter-audit:panel';
export const DOCS_DIR = path.resolve(__dirname, '..', '..', '..', 'docs');

/** GET `/jupyter-audit/api/<endPoint>` as the browser's user; must be 200. */
export async function api<T>(page: Page, endPoint: string): Promise<T> {
  const response = await page.request.get(`/jupyter-audit/api/${endPoint}`);
  expect(response.status(), `GET ${endPoint}`).toBe(200);
  return (await response.json()) as T;
}

/** Call at the top of a spec file. */
export function useRealServerAndFailOnDialogs(): void {
  // Galata mocks every URL matching /api/me by default (its `mockUser`), which
  // would also swallow our /jupyter-audit/api/me: talk to the real server.
  test.use({ mockUser: false });

  // Any alert()/confirm()/prompt() would mean trail data ran as code.
  let dialogs: string[] = [];

  test.beforeEach(async ({ page }) => {
    dialogs = [];
    page.on('dialog', async dialog => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      await dialog.dismiss();
    });
  });

  test.afterEach(() => {
    expect(dialogs, 'no dialog may open').toEqual([]);
  });
}
