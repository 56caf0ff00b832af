"""WSGI apps that the real-server tests load by dotted name (``apps.wrapped:app``)."""
