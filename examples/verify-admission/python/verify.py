#!/usr/bin/env python3
"""Verify an anteroom admission token at the origin, offline, with PyJWT.

    python3 verify.py --jwks-url https://queue.example/.well-known/jwks.json \
        --issuer anteroom [--audience tickets.example] [--show 7] TOKEN

Exits 0 and prints the claims as JSON when the token is valid: signed by a
key in anteroom's JWKS (EdDSA only), issued by `--issuer`, for `--audience`
(if given), not expired, and (with `--show`) for that show. Exits 1 with the
reason otherwise. Needs `pip install "PyJWT[crypto]"`.

Offline verification proves who was admitted and until when; whether the
session was ended early (paid, left) is what POST /v1/admission/introspect
answers.
"""

import argparse
import json
import sys

import jwt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jwks-url", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience")
    parser.add_argument("--show", type=int)
    parser.add_argument("token")
    args = parser.parse_args()

    # Caches the keys and refetches when a token names an unknown `kid`.
    jwks = jwt.PyJWKClient(args.jwks_url, cache_keys=True)
    try:
        key = jwks.get_signing_key_from_jwt(args.token)
        claims = jwt.decode(
            args.token,
            key.key,
            algorithms=["EdDSA"],  # never what the token's header says
            issuer=args.issuer,
            audience=args.audience,
            options={
                "require": ["exp", "iss", "sub", "show", "sid"],
                "verify_aud": args.audience is not None,
            },
        )
    except jwt.PyJWTError as error:
        print(f"invalid admission: {error}", file=sys.stderr)
        return 1
    if args.show is not None and claims["show"] != args.show:
        print("invalid admission: for another show", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
