/* jsonl.h: JSON lines over a UNIX socket, the pieces every server of ours shares: the VM's
 * control socket (api/control.c) and the pool's (pool/server.c). */
#ifndef UFVM_API_JSONL_H
#define UFVM_API_JSONL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Listen on a new UNIX socket at path, born 0600 (never reachable by others, even
 * briefly), non-blocking, with a deep backlog (a burst of clients is accepted and told
 * it is one too many rather than refused at connect). A socket file already there is
 * replaced only when it is stale: only ECONNREFUSED says that nobody listens; a server
 * that accepts, or whose backlog is full, is running: -EADDRINUSE, *why = busy. Returns
 * the listening fd, or -errno with *why saying which step failed.
 */
int jsonl_listen(const char *path, const char *busy, const char **why);

/* A client's answers not yet sent: buf[off..len). */
struct jsonl_out {
	char *buf;
	size_t len, off, cap;
};

static inline size_t jsonl_backlog(const struct jsonl_out *o)
{
	return o->len - o->off;
}

/* Queue n bytes; false when the backlog would pass max (the client is to be dropped) or
 * memory ran out. */
bool jsonl_queue(struct jsonl_out *o, const char *s, size_t n, size_t max);

/* Send what the socket takes now, without blocking; false when the client is gone. */
bool jsonl_flush(struct jsonl_out *o, int fd);

void jsonl_out_free(struct jsonl_out *o);

/* The answer as one compact line, newline included (*outlen without the NUL); ans is
 * consumed. NULL when ans is NULL or memory ran out. */
char *jsonl_encode(json_t *ans, int real_precision, size_t *outlen);

#endif
