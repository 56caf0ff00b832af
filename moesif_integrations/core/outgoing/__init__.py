"""Capture of the app's own HTTP calls (requests, httpx, urllib3) as events with direction
"Outgoing": ``patches.py`` hooks the clients' transports once per process, ``active.py`` says
whose options apply to a call, ``recorder.py`` turns one call into an ExchangeRecord."""
