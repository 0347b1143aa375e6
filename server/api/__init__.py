"""The REST API: handlers, request and response schemas, auth, and problem+json errors."""
