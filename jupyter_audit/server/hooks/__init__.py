"""Hooks into jupyter_server: the kernel side injected into kernels it starts (`kernels`),
kernel lifecycle (`lifecycle`), terminals (`terminals`) and saves (`contents`), each
recorded through the Recorder with the identity of the request that caused it; and
JupyterLab workspaces kept per signed-in user (`workspaces`), and jupyter_server's refusals
saying that a sign-in session has ended (`signin`)."""
