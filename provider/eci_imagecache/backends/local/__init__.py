"""The embedded local backend: SQLite state and a content-addressed blob store on disk."""
