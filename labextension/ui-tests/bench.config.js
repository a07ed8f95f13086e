/**
 * Playwright configuration of the panel's browser benchmark (bench/), run by
 * benchmarks/bench_panel.py, which starts the server on a big trail itself
 * and passes its URL in JUPYTER_AUDIT_BENCH_URL. Debian's Chromium, no video.
 */
const base = require('./playwright.config.js');

module.exports = {
  ...base,
  testDir: './bench',
  // not test-results/: a UI run in the same folder must not lose its artifacts
  outputDir: 'bench-results',
  timeout: 15 * 60 * 1000,
  reporter: [['list']],
  use: {
    ...base.use,
    baseURL: process.env.JUPYTER_AUDIT_BENCH_URL,
    trace: 'off'
  },
  webServer: undefined
};
