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

/* A server context as edged wants it: TLS 1.2 at least (older versions are deprecated, RFC 8996), no
   renegotiation (a client could make the server do handshakes over and over), the server's cipher order, and an
   idle connection giving back its read and write buffers (about 34 KB; most clients are idle between updates). */
static inline int tickplant_ssl_ctx_configure_server(SSL_CTX *ctx) {
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return 0;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 1;
}

#endif
