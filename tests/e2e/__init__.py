"""Stories end to end: a contractor's token, a JupyterHub, a server killed and restarted. A
package, as tests/kernel is, so its modules import as e2e.test_* beside the others."""
