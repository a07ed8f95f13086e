"""Kernel events into the trail: the kernel-events endpoint (`handler`), attribution of each
event to the server's own record of its cell (`attribution`), per-kernel secrets
(`secrets`), and spools left by kernels whose server went away (`spools`)."""
