/**
 * What every spec of the panel shares: the panel's id, where screenshots go,
 * a GET on the real audit API, and the page set-up (the real server behind
 * /jupyter-audit/api/me, and no dialog ever).
 */
import { expect, test } from '@jupyterlab/galata';
import type { Page } from '@playwright/test';
import { spawn } from 'child_process';
import type { ChildProcess } from 'child_process';
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

/**
 * A second JupyterLab a spec starts itself (`jupyter lab --config <config>` in
 * this folder, its port in `portVariable`), from `beforeAll` to `afterAll`,
 * ready once `/jupyter-audit/api/me` answers.
 */
export function useSecondServer(
  config: string,
  portVariable: string,
  port: number
): void {
  const url = `http://localhost:${port}`;
  let server: ChildProcess | null = null;

  test.beforeAll(async () => {
    test.setTimeout(180_000);
    server = spawn('jupyter', ['lab', '--config', config], {
      cwd: path.resolve(__dirname, '..'),
      env: { ...process.env, [portVariable]: String(port) },
      stdio: 'ignore'
    });
    for (let i = 0; i < 170; i++) {
      try {
        const r = await fetch(`${url}/jupyter-audit/api/me`);
        if (r.ok) {
          return;
        }
      } catch {
        /* not up yet */
      }
      await new Promise(resolve => setTimeout(resolve, 1000));
    }
    throw new Error(`the server of ${config} did not start`);
  });

  test.afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise(resolve => server!.once('exit', resolve));
      server.kill('SIGTERM');
      await exited;
    }
  });
}
