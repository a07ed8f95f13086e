/**
 * The panel's browser benchmark (run by benchmarks/bench_panel.py against a
 * server on a 2,000,000-event trail): time from a reviewer's action to the
 * answer drawn in the panel, in a real JupyterLab and Chromium. Prints one
 * `BENCH <label> <median ms> <max ms> <target ms>` line per measure, and the
 * floor: a bare `GET me` from the same page.
 */
import { expect, test } from '@playwright/test';
import type { Page } from '@playwright/test';

const RUNS = Number(process.env.JUPYTER_AUDIT_BENCH_RUNS || '5');
const PANEL = '.jp-AuditTrail-panel';

interface IApp {
  commands: { execute(id: string, args?: unknown): Promise<unknown> };
}

async function command(page: Page, id: string, args: unknown = {}) {
  await page.evaluate(
    async ([i, a]) =>
      (window as unknown as { jupyterapp: IApp }).jupyterapp.commands.execute(
        i as string,
        a
      ),
    [id, args]
  );
}

function report(label: string, ms: number[], target: number | null): void {
  const sorted = [...ms].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  console.log(
    `BENCH ${label}|${median.toFixed(0)}|${sorted[sorted.length - 1].toFixed(0)}|${target ?? ''}`
  );
}

/** Milliseconds from `act` to the moment `done` holds in the page. */
async function measure(
  page: Page,
  act: () => Promise<void>,
  done: () => Promise<void>
): Promise<number> {
  const t0 = Date.now();
  await act();
  await done();
  return Date.now() - t0;
}

test('panel on a big trail', async ({ page }) => {
  await page.goto('/lab');
  await expect(page.locator('#jupyterlab-splash')).toHaveCount(0, {
    timeout: 120_000
  });
  const panel = page.locator(PANEL);
  const tab = page.locator('.lm-TabBar-tab[data-id="jupyter-audit:panel"]');
  const cards = panel.locator('.jp-AuditTrail-trace');

  const floor: number[] = [];
  const open: number[] = [];
  const step500: number[] = [];
  const search: number[] = [];
  const lastPage: number[] = [];
  const openServer: number[] = [];
  for (let run = 0; run < RUNS + 1; run++) {
    const keep = run > 0; // the first run warms caches, unmeasured
    floor.push(
      await page.evaluate(async () => {
        const t0 = performance.now();
        await fetch('/jupyter-audit/api/me');
        return performance.now() - t0;
      })
    );

    // first page of traces after opening the panel (a fresh page, the
    // workspace reset so the panel starts closed)
    await page.goto('/lab?reset');
    await expect(page.locator('#jupyterlab-splash')).toHaveCount(0, {
      timeout: 120_000
    });
    // Timed in the page, from the click's event to the first card added
    // (Playwright's own wait for the tab to settle after a load is not counted).
    await page.evaluate(() => {
      const w = window as unknown as { clickAt?: number; cardAt?: number };
      document.addEventListener(
        'click',
        () => (w.clickAt = w.clickAt ?? performance.now()),
        true
      );
      new MutationObserver((_, observer) => {
        if (document.querySelector('.jp-AuditTrail-trace')) {
          w.cardAt = performance.now();
          observer.disconnect();
        }
      }).observe(document.body, { childList: true, subtree: true });
    });
    const listed = page.waitForResponse(r =>
      r.url().includes('/jupyter-audit/api/traces?')
    );
    await tab.click();
    await expect(cards.first()).toBeVisible({ timeout: 60_000 });
    const response = await listed;
    const { clickAt, cardAt } = await page.evaluate(() => {
      const w = window as unknown as { clickAt: number; cardAt: number };
      return { clickAt: w.clickAt, cardAt: w.cardAt };
    });
    if (keep) {
      open.push(cardAt - clickAt);
      openServer.push(response.request().timing().responseEnd);
    }

    // a 500-step trace
    const s = await measure(
      page,
      () =>
        command(page, 'jupyter-audit:open-trace', { traceId: 'trace-long' }),
      () =>
        expect(panel.locator('.jp-AuditTrail-end')).toBeVisible({
          timeout: 60_000
        })
    );
    if (keep) step500.push(s);
    await panel.locator('.jp-AuditTrail-back').click();
    await expect(panel.locator('.jp-AuditTrail-timeline')).toHaveCount(0);

    // a search (typed, then Enter; answered and drawn)
    const box = panel.locator('.jp-AuditTrail-search');
    await box.fill('');
    await box.press('Enter');
    await expect(cards.first()).toBeVisible({ timeout: 60_000 });
    const word = ['churn', 'enterprise smb', 'tenure plan'][run % 3];
    await box.fill(word);
    const q = await measure(
      page,
      async () => {
        const answered = page.waitForResponse(r => r.url().includes('q='));
        await box.press('Enter');
        await answered;
      },
      () => expect(cards.first()).toBeVisible({ timeout: 60_000 })
    );
    if (keep) search.push(q);
    await box.fill('');
    await box.press('Enter');

    // the last page of a 100,000-event trace, from its first
    await command(page, 'jupyter-audit:open-trace', { traceId: 'trace-huge' });
    await expect(panel.locator('.jp-AuditTrail-jumpLast')).toBeEnabled({
      timeout: 60_000
    });
    const l = await measure(
      page,
      () => panel.locator('.jp-AuditTrail-jumpLast').click(),
      () =>
        expect(panel.locator('.jp-AuditTrail-end')).toBeVisible({
          timeout: 60_000
        })
    );
    if (keep) lastPage.push(l);
    await panel.locator('.jp-AuditTrail-back').click();
  }
  report('floor: GET me from the page', floor.slice(1), null);
  report('first page of traces after opening the panel', open, 1000);
  report('  of which: the list request, sent to answered', openServer, null);
  report('a 500-step trace after a click', step500, 300);
  report('a search, answered and drawn', search, 500);
  report('the last page of a 100,000-event trace', lastPage, 1000);
});
