"""Stand-ins for the services the tool talks to, run on this machine: a CI server (``ci_server``),
a GitHub Actions runner (``actions``) and a hostile HTTP server (``hostile_server``)."""
