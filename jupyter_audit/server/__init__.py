"""What runs in the jupyter_server process: the AuditApp (`app`), the Recorder everything
records through (`recorder`), the kernel-websocket gateway (`gateway`), the REST API
(`handlers`, `authorization`), kernel events (`ingest/`) and the hooks into jupyter_server
(`hooks/`). The trail itself, masking, identities and event kinds are domain packages beside
this one; nothing there imports from here."""
