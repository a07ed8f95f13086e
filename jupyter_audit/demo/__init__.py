"""The live demo world of `jupyter audit demo` (without `--db`): demo people at a local
OpenID Connect provider, a sample shop database with fake customers, a local HTTP API stub,
the demo notebooks, and the process that runs them all and stops them on Ctrl-C.

Everything here is for a demo on one machine, on loopback: fake people, fake data, a sign-in
where anyone can pick any demo user. Never import it from the server or the kernel side.
"""
