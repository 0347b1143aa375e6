"""The database: typed models, sessions, queries and migrations; all SQL lives in this package."""
