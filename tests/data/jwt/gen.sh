#!/bin/sh
# Regenerates the TEST-ONLY keys used by tests/unit/test_jwt_auth.c. Run once
# at development time; the output is committed so that `make check` needs no
# openssl CLI and tests are reproducible. Never use these keys anywhere else.
set -eu
cd "$(dirname "$0")"

b64url() { basenc --base64url -w0 | tr -d '='; }

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
openssl pkey -in rsa.key -pubout -out rsa.pub
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key
openssl pkey -in ec.key -pubout -out ec.pub
# Unrelated pairs: tokens they sign are "forged" for the issuer above.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other-rsa.key
openssl pkey -in other-rsa.key -pubout -out other-rsa.pub
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other-ec.key
# Keys the loader must refuse: RSA below 2048 bits, EC on another curve.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 2>/dev/null | openssl pkey -pubout -out weak-rsa1024.pub
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 | openssl pkey -pubout -out p384.pub
# The RSA public key as a self-signed certificate (issuers often publish one).
openssl req -new -x509 -key rsa.key -subj "/CN=smis-test-issuer" -days 36500 -out rsa.crt
# One PEM file holding both public keys.
cat rsa.pub ec.pub > both.pub

# JWKS with both public keys (kids rsa-1, ec-1), plus what a Keycloak realm
# also publishes and the loader must skip: an encryption key (use=enc,
# alg=RSA-OAEP, here the unrelated RSA key) under kid enc-1.
n=$(openssl rsa -pubin -in rsa.pub -noout -modulus | sed 's/^Modulus=//' | xxd -r -p | b64url)
on=$(openssl rsa -pubin -in other-rsa.pub -noout -modulus | sed 's/^Modulus=//' | xxd -r -p | b64url)
# The last 65 bytes of a P-256 SubjectPublicKeyInfo are 04 || x || y.
openssl pkey -pubin -in ec.pub -outform DER | tail -c 64 > ec.xy
x=$(head -c 32 ec.xy | b64url)
y=$(tail -c 32 ec.xy | b64url)
rm -f ec.xy
cat > jwks.json <<JSON
{"keys":[
 {"kty":"RSA","kid":"rsa-1","use":"sig","alg":"RS256","n":"$n","e":"AQAB"},
 {"kty":"EC","kid":"ec-1","use":"sig","alg":"ES256","crv":"P-256","x":"$x","y":"$y"},
 {"kty":"RSA","kid":"enc-1","use":"enc","alg":"RSA-OAEP","n":"$on","e":"AQAB"}
]}
JSON
