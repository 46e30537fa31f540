"""A resource server in Python: verifies a sessiond session token offline with PyJWT from the
JWKS and refuses a tampered one; then a standard OAuth client (Authlib) introspects and
revokes it (RFC 7662, RFC 7009).

Usage: python verify.py ISSUER TOKEN CLIENT_ID CLIENT_SECRET
"""

import base64
import json
import sys

import jwt
from authlib.integrations.requests_client import OAuth2Session

issuer, token, client_id, client_secret = sys.argv[1:5]

jwks = jwt.PyJWKClient(f"{issuer}/.well-known/jwks.json")
key = jwks.get_signing_key_from_jwt(token)
header = jwt.get_unverified_header(token)
assert header["typ"] == "at+jwt", header
claims = jwt.decode(token, key.key, algorithms=["EdDSA", "ES256"], audience="sessiond", issuer=issuer)
print(f"PyJWT: verified {header['alg']} token of tenant {claims['tid']}, session {claims['sid']}")

h, p, s = token.split(".")
payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
payload["sub"] = "00000000-0000-4000-8000-000000000000"
forged_p = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
try:
    jwt.decode(f"{h}.{forged_p}.{s}", key.key, algorithms=["EdDSA", "ES256"], audience="sessiond", issuer=issuer)
    sys.exit("PyJWT: a tampered token was accepted")
except jwt.InvalidSignatureError:
    print("PyJWT: tampered token refused")

oauth = OAuth2Session(client_id, client_secret)
live = oauth.introspect_token(f"{issuer}/oauth2/introspect", token=token).json()
assert live["active"] is True and live["sid"] == claims["sid"], live
print("Authlib: introspection says active")
oauth.revoke_token(f"{issuer}/oauth2/revoke", token=token).raise_for_status()
dead = oauth.introspect_token(f"{issuer}/oauth2/introspect", token=token).json()
assert dead == {"active": False}, dead
print("Authlib: revoked; introspection says inactive")
