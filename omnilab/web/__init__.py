"""The web UI: server-rendered pages over the tracking store and the queue.

``omnilab serve`` mounts it beside the JSON API (:func:`omnilab.web.app.install`);
``omnilab ui`` serves it alone, read-only, on a local tracking store
(:func:`omnilab.web.app.create_ui_app`). Pages are jinja2 templates (autoescaped);
JavaScript only enhances them (live log and status), from static files, so a strict
Content-Security-Policy holds. See docs/web.md.
"""
