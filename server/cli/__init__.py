"""The `flotilla` command line: the server, the agent, and client commands for the REST API."""
