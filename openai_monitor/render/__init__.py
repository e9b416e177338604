"""Rendering: rich tables and plotext charts. Data in, text out; no database or network access here."""
