"""Emulated authorization servers: Google's (served by the Google emulator) and the Microsoft identity
platform v2.0 (served by the Graph emulator), over one provider-neutral core
(``../shared/reference/oauth-and-credentials.md`` 1.1-1.12 and 2.1-2.8).

One job per module, imports pointing one way: ``google``/``microsoft`` (routes, provider wording) ->
``admin`` (the shared ``/emulator/oauth/...`` switches) -> ``core`` (clients, codes, grants, tokens,
revocation, the token-request log); beside them ``consent`` (the HTML consent page and redirects),
``forms`` (token-request bodies, client credentials), ``jwt`` (RS256 with ``cryptography``) and ``tls``
(a local CA and server certificate, since MSAL insists on an https authority). Like every emulator it
imports nothing of calsync but the other emulator modules.
"""
