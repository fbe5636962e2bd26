"""The domain: tables, schemas, repositories and use cases shared by every service."""
