"""kapture-sync: keep a SQL database in step with Kapture CRM's Pull Order API."""

__version__ = "0.1.0"
