"""Outbound webhooks: Standard Webhooks signing (signing.py), receiver URL checks (urls.py) and the
delivery worker (delivery.py). The store's side is store/hooks.py; the routes are
service/hook_routes.py."""
