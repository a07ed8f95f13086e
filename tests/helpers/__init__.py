"""Helpers the tests share: servers and the CLI, kernels over the websocket, the trail, OIDC
issuers, a JupyterHub, identities and notebooks. Fixtures stay in the conftest files."""
