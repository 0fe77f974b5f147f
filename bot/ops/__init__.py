"""What operators scrape and read: the /healthz and /metrics web server, the
Prometheus metrics, and the status page (its values, templates and token check).
Fed by callbacks from the app; imports the engine and common only (and Jinja2,
when the page is first rendered).
"""
