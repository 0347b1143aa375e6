"""Request and response bodies, each defined once as a typed pydantic model, a module per job.

The same models validate input (unknown fields rejected, strict types) and generate the
published OpenAPI document: this package is the document's one source of the bodies handlers
validate or answer through (server/api/operations.py names them route by route); the answers
handlers build as plain values are described in server/api/answers.py.
"""
