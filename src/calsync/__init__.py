"""calsync: keep calendars and their video conferences in sync."""

__version__ = "0.1.0"
