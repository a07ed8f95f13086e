/**
 * Playwright configuration: Galata's defaults, run in Debian's Chromium
 * (browsers cannot be downloaded here) against `jlpm start`, i.e. a real
 * JupyterLab with the jupyter-audit server extension on a seeded demo trail.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

// The same variable sets the server's port in jupyter_server_test_config.py.
const PORT = process.env.JUPYTER_AUDIT_UI_PORT || '8888';
const BASE_URL = `http://localhost:${PORT}`;

// A second server that signs people in at a real OIDC issuer (oidc-provider-mock,
// started here too) for tests/session.spec.ts; see jupyter_server_oidc_config.py.
const OIDC_PORT =
  process.env.JUPYTER_AUDIT_UI_OIDC_PORT || String(Number(PORT) + 10);
const ISSUER_PORT =
  process.env.JUPYTER_AUDIT_UI_ISSUER_PORT || String(Number(PORT) + 11);
process.env.JUPYTER_AUDIT_UI_OIDC_PORT = OIDC_PORT;
process.env.JUPYTER_AUDIT_UI_OIDC_URL = `http://127.0.0.1:${OIDC_PORT}`;
process.env.JUPYTER_AUDIT_UI_OIDC_ISSUER = `http://127.0.0.1:${ISSUER_PORT}`;
// long enough to sign in and start a kernel, short enough to wait for its end
process.env.JUPYTER_AUDIT_UI_SESSION_LIFETIME =
  process.env.JUPYTER_AUDIT_UI_SESSION_LIFETIME || '90';
const USERS = [
  { sub: 'alice-sub', preferred_username: 'alice', groups: ['analysts'] }
];

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
  webServer: [
    {
      command: process.env.JUPYTER_AUDIT_UI_SERVER_CMD || 'jlpm start',
      url: `${BASE_URL}/lab`,
      timeout: 120 * 1000,
      reuseExistingServer: false,
      // SIGTERM lets the server close the trail and remove its temporary directory.
      gracefulShutdown: { signal: 'SIGTERM', timeout: 10000 },
      stdout: 'pipe',
      stderr: 'pipe'
    },
    {
      command:
        `python -m oidc_provider_mock --port ${ISSUER_PORT} ` +
        USERS.map(u => `--user-claims '${JSON.stringify(u)}'`).join(' '),
      url: `${process.env.JUPYTER_AUDIT_UI_OIDC_ISSUER}/.well-known/openid-configuration`,
      timeout: 60 * 1000,
      reuseExistingServer: false,
      env: { PYTHONWARNINGS: 'ignore' },
      stdout: 'ignore',
      stderr: 'pipe'
    },
    {
      command: 'jlpm start:oidc',
      // answers without signing in
      url: `${process.env.JUPYTER_AUDIT_UI_OIDC_URL}/api`,
      timeout: 120 * 1000,
      reuseExistingServer: false,
      gracefulShutdown: { signal: 'SIGTERM', timeout: 10000 },
      stdout: 'pipe',
      stderr: 'pipe'
    }
  ]
};
