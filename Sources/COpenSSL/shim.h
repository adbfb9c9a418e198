#ifndef TICKPLANT_COPENSSL_SHIM_H
#define TICKPLANT_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/bio.h>

/* OpenSSL's macros that Swift cannot call, as functions. */

/* A server context as edged wants it (docs/security.md, TLS):
   - TLS 1.2 at least (older versions are deprecated, RFC 8996), or 1.3 only;
   - on TLS 1.2 only ECDHE key exchange (forward secrecy) with an AEAD cipher (AES-GCM, ChaCha20-Poly1305), as
     RFC 9325 recommends; TLS 1.3's suites are all of that kind, named here so the policy is in one place;
   - the named groups X25519, P-256, P-384;
   - no renegotiation (a client could make the server do handshakes over and over), no compression (CRIME), the
     server's cipher order;
   - an idle connection giving back its read and write buffers (about 34 KB; most clients are idle between
     updates). */
static inline int tickplant_ssl_ctx_configure_server(SSL_CTX *ctx, int tls13_only) {
    if (SSL_CTX_set_min_proto_version(ctx, tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) return 0;
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) return 0;
    if (SSL_CTX_set_ciphersuites(ctx,
            "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1) return 0;
    if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) return 0;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 1;
}

#endif
