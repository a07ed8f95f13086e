/**
 * Playwright configuration: Galata's defaults, run in Debian's Chromium
 * (browsers cannot be downloaded here) against `jlpm start`, i.e. a real
 * JupyterLab with the jupyter-audit server extension on a seeded demo trail.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

// The same variable sets the server's port in jupyter_server_test_config.py.
const PORT = process.env.JUPYTER_AUDIT_UI_PORT || '8888';
const BASE_URL = `http://localhost:${PORT}`;

module.exports = {
  ...baseConfig,
  testDir: './tests',
  // One server and one seeded trail serve every test.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 90 * 1000,
  // Never open a browser on the HTML report.
  reporter: [['list'], ['html', { open: 'never' }]],
  use: {
    ...baseConfig.use,
    baseURL: BASE_URL,
    viewport: { width: 1280, height: 800 },
    locale: 'en-US',
    timezoneId: 'UTC',
    // Video needs Playwright's own ffmpeg download; traces do not.
    video: 'off',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run'
      ]
    }
  },
  webServer: {
    command: process.env.JUPYTER_AUDIT_UI_SERVER_CMD || 'jlpm start',
    url: `${BASE_URL}/lab`,
    timeout: 120 * 1000,
    reuseExistingServer: false,
    // SIGTERM lets the server close the trail and remove its temporary directory.
    gracefulShutdown: { signal: 'SIGTERM', timeout: 10000 },
    stdout: 'pipe',
    stderr: 'pipe'
  }
};
