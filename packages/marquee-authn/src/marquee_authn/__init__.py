"""Local verification of Marquee access tokens (EdDSA JWTs) against a cached JWKS."""
