/*
 * spec/support/tls_proxy.c - a small TLS-terminating TCP proxy for the specs (test-only; built by
 * spec/support/tls.lua with `cc ... -lssl -lcrypto`, never part of the module).
 *
 *   tls_proxy LISTEN_ADDR LISTEN_PORT CERT KEY BACKEND_PORT LOG_FILE [SECONDS]
 *
 * Listens on LISTEN_ADDR:LISTEN_PORT (IPv4 or IPv6 literal; port 0 = any), writes the bound port
 * as the first line of LOG_FILE, then appends "accept" to LOG_FILE for every TCP connection it
 * accepts (before the handshake), so a spec can assert that nothing connected. Each connection:
 * TLS handshake with CERT/KEY, then the plain bytes are relayed to 127.0.0.1:BACKEND_PORT and back.
 * Exits by itself after SECONDS (default 120).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static void relay(SSL *ssl, int cfd, int backend_port)
{
    struct sockaddr_in b;
    int bfd = socket(AF_INET, SOCK_STREAM, 0);
    char buf[16384];
    memset(&b, 0, sizeof b);
    b.sin_family = AF_INET;
    b.sin_port = htons((unsigned short)backend_port);
    b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bfd < 0 || connect(bfd, (struct sockaddr *)&b, sizeof b) != 0) return;
    for (;;) {
        struct pollfd p[2];
        int n;
        p[0].fd = cfd;
        p[0].events = POLLIN;
        p[1].fd = bfd;
        p[1].events = POLLIN;
        if (SSL_pending(ssl) == 0 && poll(p, 2, 30000) <= 0) break;
        if (SSL_pending(ssl) > 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            n = SSL_read(ssl, buf, sizeof buf);
            if (n <= 0) break;
            if (write(bfd, buf, (size_t)n) != n) break;
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            n = (int)read(bfd, buf, sizeof buf);
            if (n <= 0) break;
            if (SSL_write(ssl, buf, n) != n) break;
        }
    }
    close(bfd);
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int lfd, one = 1, port, backend;
    FILE *log;
    SSL_CTX *ctx;
    if (argc < 7) {
        fprintf(stderr, "usage: tls_proxy ADDR PORT CERT KEY BACKEND_PORT LOG [SECONDS]\n");
        return 2;
    }
    port = atoi(argv[2]);
    backend = atoi(argv[5]);
    alarm(argc > 7 ? (unsigned)atoi(argv[7]) : 120u);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);
    memset(&ss, 0, sizeof ss);
    if (strchr(argv[1], ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, argv[1], &s6->sin6_addr) != 1) return 2;
        sl = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, argv[1], &s4->sin_addr) != 1) return 2;
        sl = sizeof *s4;
    }
    lfd = socket(ss.ss_family, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, sl) != 0 || listen(lfd, 64) != 0) {
        perror("tls_proxy: listen");
        return 1;
    }
    sl = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &sl);
    port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    log = fopen(argv[6], "a");
    if (!log) return 1;
    fprintf(log, "%d\n", port);
    fflush(log);
    for (;;) {
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        fprintf(log, "accept\n");
        fflush(log);
        if (fork() == 0) {
            SSL *ssl = SSL_new(ctx);
            close(lfd);
            SSL_set_fd(ssl, cfd);
            if (SSL_accept(ssl) == 1) relay(ssl, cfd, backend);
            SSL_shutdown(ssl);
            SSL_free(ssl);
            close(cfd);
            _exit(0);
        }
        close(cfd);
    }
}
