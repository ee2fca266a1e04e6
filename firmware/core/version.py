"""The application's version: one place, below everything that shows it."""

VERSION = "0.1.0"
