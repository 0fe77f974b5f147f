"""What operators scrape: the /healthz and /metrics web server and the Prometheus
metrics. Fed by callbacks from the app; imports the engine and common only.
"""
