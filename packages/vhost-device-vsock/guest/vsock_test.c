/*
 * vsock-test: AF_VSOCK checks for the test guest's virtio-vsock device.
 *
 * The guest is a busybox initramfs with no socat and no ncat that speak vsock,
 * so this small program opens the sockets itself. It is built statically on
 * the host (tests/guest_vsock.py, through vhost_user_core.testing.
 * guest_program) and copied into each boot's initramfs as /vsock-test.
 *
 * Subcommands:
 *   send CID PORT NBYTES   connect (stream) to CID:PORT, write NBYTES of PRNG
 *                          data in 64 KiB chunks, shutdown(SHUT_WR), read the
 *                          peer's reply until EOF, close.
 *       SEND bytes=N crc=XXXXXXXX ms=T reply=R
 *         crc: CRC-32 of the bytes written (zlib.crc32); ms: from connect to
 *         the reply's EOF; reply: what the peer sent back, every whitespace or
 *         non-printable byte replaced by '_', cut at 200 characters.
 *   recv PORT              listen (stream) on VMADDR_CID_ANY:PORT, accept one
 *                          connection, read until EOF, answer
 *                          "DONE <bytes> <crc XXXXXXXX>\n", close.
 *       LISTENING port=P   (once listening)
 *       RECV bytes=N crc=XXXXXXXX ms=T peer=CID:PORT
 *         ms: from accept to EOF.
 *   many CID PORT COUNT    connect COUNT streams at once, then write
 *                          "hello <i>\n" on each (i from 0), then read a line
 *                          back on each and check it is the same (the host
 *                          echoes), then close them all.
 *       MANY ok=K of=COUNT
 *   connect CID PORT       one connect with a 5 s timeout.
 *       CONNECT result=ok | CONNECT result=<errno name, e.g. ECONNRESET>
 *         exit status 0 either way (1 only for a usage error).
 *   seq CID PORT COUNT     connect (seqpacket), then COUNT times: send one
 *                          message of PRNG size in [1, 32768] and PRNG
 *                          content, receive one message (the host echoes it)
 *                          and check its size and content.
 *       SEQ ok=K of=COUNT bytes=<total sent>
 *   seqrecv PORT COUNT     listen (seqpacket) on VMADDR_CID_ANY:PORT, accept
 *                          one, receive COUNT messages and echo each back as
 *                          one message, report, then wait for EOF and close.
 *       LISTENING port=P
 *       SEQRECV ok=COUNT sizes_crc=XXXXXXXX bytes=N
 *         sizes_crc: CRC-32 of all received messages concatenated; bytes:
 *         their total size.
 *   echo PORT              listen (stream) on VMADDR_CID_ANY:PORT and echo
 *                          every byte of every connection back, forever (one
 *                          child process per connection; a half-close from
 *                          the peer is answered with a half-close once all
 *                          its bytes are echoed). Run it in the background.
 *       LISTENING port=P
 *   shutrd CID PORT SIGNAL COUNT
 *                          the reading side of the shutdown check, with
 *                          `shutpeer` on the other guest. SIGNAL is a byte
 *                          channel to the peer that bypasses the connection
 *                          under test: "vsock:CID:PORT" (a stream the host
 *                          relays), "tcp:A.B.C.D:PORT" (TCP, e.g. through
 *                          QEMU's user networking) or a device path (a
 *                          virtio-serial port the host relays). Wait for the
 *                          peer's 'L' (it listens; a TCP channel is reopened
 *                          until it comes),
 *                          then COUNT times: connect (stream) to CID:PORT,
 *                          shutdown(SHUT_RD), write 'S' on SIGNAL, read the
 *                          peer's verdict byte ('P': its send failed with
 *                          EPIPE), close.
 *       SHUTRD ok=K of=COUNT   (ok: verdicts 'P')
 *   shutpeer PORT SIGNAL COUNT
 *                          listen (stream) on PORT, open SIGNAL
 *                          ("vsock-listen:PORT2": accept one stream on PORT2,
 *                          "tcp-listen:PORT2": one TCP connection, or a
 *                          device path), write 'L' on it, then COUNT
 *                          times: accept, read 'S' from SIGNAL (the peer has
 *                          shut down reading), send one byte, which must fail
 *                          with EPIPE, answer 'P' (or 'M', a miss) on SIGNAL,
 *                          close.
 *       LISTENING port=P   (for PORT, and for PORT2)
 *       SHUTPEER epipe=K of=COUNT [miss=<first miss: sent_N or errno name>
 *                          miss_at=<its round> misses=M late_us=<per miss:
 *                          how long after the signal EPIPE came, -1 never>]
 *                          With VSOCK_TRACE set, both write what they do to
 *                          the kernel's trace_marker (ftrace), so a trace
 *                          shows it among the kernel's own events.
 *
 * Output is for machines: each invocation prints one result line to stdout
 * (plus LISTENING first for the servers), the subcommand's name in capitals
 * then key=value fields separated by single spaces; no value contains a
 * space. On failure the line carries the fields gathered so far and ends with
 * error=<step>:<ERRNO NAME>:<strerror with '_' for spaces> (for instance
 * error=connect:ECONNRESET:Connection_reset_by_peer), and the exit status is
 * 1. A usage error prints "<SUBCOMMAND or USAGE> error=usage:<reason>" and
 * the usage text (on stderr), and exits 1.
 *
 * Data: xorshift64 (shifts 13, 7, 17) seeded with 0x9e3779b97f4a7c15, each
 * output taken as 8 little-endian bytes; a buffer whose size is not a
 * multiple of 8 takes the first bytes of one more output. `send` fills its
 * 64 KiB chunks from one generator; `seq` draws each message's size as
 * 1 + next() % 32768 and then fills it.
 *
 * Build: gcc -static -O2 -Wall -Wextra -Werror -o vsock-test vsock_test.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#define CHUNK (64 * 1024)
#define SEQ_MAX_MESSAGE 32768
#define SEQ_BUFFER 65536
#define REPLY_MAX 200
#define CONNECT_TIMEOUT_S 10 /* every client subcommand but `connect` */
#define PROBE_TIMEOUT_S 5    /* `connect` */
#define IO_TIMEOUT_S 30      /* a read or write that makes no progress at all */
#define BACKLOG 128

static const char *argv0 = "vsock-test";

/* ------------------------------------------------------------------ output */

static void usage(void)
{
	fprintf(stderr,
		"usage: %s send CID PORT NBYTES\n"
		"       %s recv PORT\n"
		"       %s many CID PORT COUNT\n"
		"       %s connect CID PORT\n"
		"       %s seq CID PORT COUNT\n"
		"       %s seqrecv PORT COUNT\n"
		"       %s echo PORT\n"
		"       %s shutrd CID PORT SIGNAL COUNT\n"
		"       %s shutpeer PORT SIGNAL COUNT\n",
		argv0, argv0, argv0, argv0, argv0, argv0, argv0, argv0, argv0);
}

/* One result line: KIND, then the formatted key=value fields. */
static void result(const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void result(const char *kind, const char *fmt, ...)
{
	va_list ap;

	fputs(kind, stdout);
	fputc(' ', stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static const char *errno_name(int err)
{
	static char unknown[16];

	switch (err) {
#define NAME(e) case e: return #e
	NAME(EPERM); NAME(ENOENT); NAME(EINTR); NAME(EIO); NAME(EBADF);
	NAME(EAGAIN); NAME(ENOMEM); NAME(EACCES); NAME(EFAULT); NAME(EBUSY);
	NAME(EINVAL); NAME(ENFILE); NAME(EMFILE); NAME(EPIPE); NAME(ENODEV);
	NAME(ENOTSOCK); NAME(EMSGSIZE); NAME(EPROTOTYPE); NAME(ENOPROTOOPT);
	NAME(EPROTONOSUPPORT); NAME(ESOCKTNOSUPPORT); NAME(EOPNOTSUPP);
	NAME(EAFNOSUPPORT); NAME(EADDRINUSE); NAME(EADDRNOTAVAIL);
	NAME(ENETDOWN); NAME(ENETUNREACH); NAME(ECONNABORTED);
	NAME(ECONNRESET); NAME(ENOBUFS); NAME(EISCONN); NAME(ENOTCONN);
	NAME(ESHUTDOWN); NAME(ETIMEDOUT); NAME(ECONNREFUSED);
	NAME(EHOSTDOWN); NAME(EHOSTUNREACH); NAME(EALREADY);
	NAME(EINPROGRESS);
#undef NAME
	default:
		snprintf(unknown, sizeof(unknown), "E%d", err);
		return unknown;
	}
}

/* "step:ENAME:strerror_text" (a single token), or "step:detail" for err 0. */
static const char *errtext(const char *step, int err, const char *detail)
{
	static char text[256];
	char *p;

	if (err)
		snprintf(text, sizeof(text), "%s:%s:%s", step, errno_name(err),
			 strerror(err));
	else
		snprintf(text, sizeof(text), "%s:%s", step, detail);
	for (p = text; *p; p++)
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			*p = '_';
	return text;
}

/* ---------------------------------------------------- arguments and numbers */

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_u64(s, UINT32_MAX, &v))
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int usage_error(const char *kind, const char *reason)
{
	result(kind, "error=%s", errtext("usage", 0, reason));
	usage();
	return 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ CRC-32, PRNG */

/* CRC-32 of zlib (reflected polynomial 0xedb88320), slicing by 8. */
static uint32_t crc_table[8][256];

static void crc32_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^
					  crc_table[0][crc_table[k - 1][i] & 0xff];
}

static uint32_t load_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Like zlib.crc32(data, crc): start from 0 and chain the results. */
static uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	crc = ~crc;
	for (; len >= 8; p += 8, len -= 8) {
		uint32_t one = load_le32(p) ^ crc, two = load_le32(p + 4);

		crc = crc_table[7][one & 0xff] ^ crc_table[6][(one >> 8) & 0xff] ^
		      crc_table[5][(one >> 16) & 0xff] ^ crc_table[4][one >> 24] ^
		      crc_table[3][two & 0xff] ^ crc_table[2][(two >> 8) & 0xff] ^
		      crc_table[1][(two >> 16) & 0xff] ^ crc_table[0][two >> 24];
	}
	while (len--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint64_t prng_state = 0x9e3779b97f4a7c15ull;

static uint64_t prng_next(void)
{
	uint64_t x = prng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return prng_state = x;
}

static void prng_fill(unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = prng_next();

		for (size_t k = 0; k < 8 && i + k < len; k++)
			buf[i + k] = (unsigned char)(x >> (8 * k));
	}
}

/* ------------------------------------------------------------------ sockets */

static void set_io_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A connected socket, or -1 with *step naming what failed (errno is set). */
static int vsock_connect(int type, uint32_t cid, uint32_t port, int timeout_s,
			 const char **step)
{
	struct sockaddr_vm addr = {
		.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port,
	};
	struct timeval tv = { .tv_sec = timeout_s };
	int fd, err;

	*step = "socket";
	fd = socket(AF_VSOCK, type, 0);
	if (fd < 0)
		return -1;
	*step = "connect_timeout";
	if (setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv,
		       sizeof(tv)))
		goto fail;
	*step = "connect";
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)))
		goto fail;
	set_io_timeouts(fd);
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* A listening socket on VMADDR_CID_ANY:port, announced with LISTENING. */
static int vsock_listen(int type, uint32_t port, const char **step)
{
	struct sockaddr_vm addr = {
		.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port,
	};
	int fd, err;

	*step = "socket";
	fd = socket(AF_VSOCK, type, 0);
	if (fd < 0)
		return -1;
	*step = "bind";
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)))
		goto fail;
	*step = "listen";
	if (listen(fd, BACKLOG))
		goto fail;
	result("LISTENING", "port=%u", port);
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

static int vsock_accept(int listener, struct sockaddr_vm *peer)
{
	socklen_t len = sizeof(*peer);
	int fd;

	do
		fd = accept(listener, (struct sockaddr *)peer, &len);
	while (fd < 0 && errno == EINTR);
	return fd;
}

/* Listen on port, accept one connection and close the listener: the connected fd,
 * with I/O timeouts set, or -1 after printing kind's error line. */
static int accept_one(const char *kind, int type, uint32_t port, struct sockaddr_vm *peer)
{
	const char *step;
	int listener, fd;

	listener = vsock_listen(type, port, &step);
	if (listener < 0) {
		result(kind, "error=%s", errtext(step, errno, NULL));
		return -1;
	}
	fd = vsock_accept(listener, peer);
	if (fd < 0) {
		result(kind, "error=%s", errtext("accept", errno, NULL));
		close(listener);
		return -1;
	}
	close(listener);
	set_io_timeouts(fd);
	return fd;
}

/* Write all of buf; 0, or -1 with errno set. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static ssize_t read_some(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	return n;
}

/* --------------------------------------------------------------- subcommands */

static int cmd_send(uint32_t cid, uint32_t port, uint64_t nbytes)
{
	static unsigned char buf[CHUNK];
	char reply[REPLY_MAX + 1];
	size_t reply_len = 0;
	uint64_t sent = 0, start = now_ms();
	uint32_t crc = 0;
	const char *step;
	int fd;

	fd = vsock_connect(SOCK_STREAM, cid, port, CONNECT_TIMEOUT_S, &step);
	if (fd < 0)
		goto fail;
	while (sent < nbytes) {
		size_t len = nbytes - sent < CHUNK ? (size_t)(nbytes - sent) : CHUNK;

		prng_fill(buf, len);
		step = "write";
		if (write_all(fd, buf, len))
			goto fail;
		crc = crc32_update(crc, buf, len);
		sent += len;
	}
	step = "shutdown";
	if (shutdown(fd, SHUT_WR))
		goto fail;
	for (;;) {
		ssize_t n;

		step = "read_reply";
		n = read_some(fd, buf, sizeof(buf));
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n && reply_len < REPLY_MAX; i++) {
			unsigned char c = buf[i];

			reply[reply_len++] = (c > ' ' && c < 0x7f) ? (char)c : '_';
		}
	}
	reply[reply_len] = '\0';
	close(fd);
	result("SEND", "bytes=%llu crc=%08x ms=%llu reply=%s",
	       (unsigned long long)sent, crc,
	       (unsigned long long)(now_ms() - start), reply);
	return 0;
fail:
	result("SEND", "bytes=%llu crc=%08x error=%s", (unsigned long long)sent,
	       crc, errtext(step, errno, NULL));
	return 1;
}

static int cmd_recv(uint32_t port)
{
	static unsigned char buf[CHUNK];
	char line[64];
	struct sockaddr_vm peer = { 0 };
	uint64_t got = 0, start;
	uint32_t crc = 0;
	const char *step;
	int fd;

	fd = accept_one("RECV", SOCK_STREAM, port, &peer);
	if (fd < 0)
		return 1;
	start = now_ms();
	for (;;) {
		/* 0 is the peer's EOF (its SHUT_WR or close), nothing else. */
		ssize_t n;

		step = "read";
		n = read_some(fd, buf, sizeof(buf));
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		crc = crc32_update(crc, buf, (size_t)n);
		got += (uint64_t)n;
	}
	snprintf(line, sizeof(line), "DONE %llu %08x\n", (unsigned long long)got,
		 crc);
	step = "write_reply";
	if (write_all(fd, line, strlen(line)))
		goto fail;
	close(fd);
	result("RECV", "bytes=%llu crc=%08x ms=%llu peer=%u:%u",
	       (unsigned long long)got, crc,
	       (unsigned long long)(now_ms() - start), peer.svm_cid,
	       peer.svm_port);
	return 0;
fail:
	result("RECV", "bytes=%llu crc=%08x peer=%u:%u error=%s",
	       (unsigned long long)got, crc, peer.svm_cid, peer.svm_port,
	       errtext(step, errno, NULL));
	return 1;
}

/* Read one line (up to and including '\n') into buf; its length, or -1. */
static ssize_t read_line(int fd, char *buf, size_t size)
{
	size_t len = 0;

	while (len + 1 < size) {
		ssize_t n = read_some(fd, buf + len, 1);

		if (n < 0)
			return -1;
		if (n == 0)
			break;
		if (buf[len++] == '\n')
			break;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

static int cmd_many(uint32_t cid, uint32_t port, uint32_t count)
{
	int *fds = calloc(count, sizeof(*fds));
	char first_error[256] = "";
	char want[32], got[64];
	uint32_t ok = 0;
	struct rlimit lim;

	if (!fds) {
		result("MANY", "ok=0 of=%u error=%s", count,
		       errtext("calloc", ENOMEM, NULL));
		return 1;
	}
	/* Every connection is open at once: allow as many descriptors as we may. */
	if (!getrlimit(RLIMIT_NOFILE, &lim) && lim.rlim_cur < lim.rlim_max) {
		lim.rlim_cur = lim.rlim_max;
		setrlimit(RLIMIT_NOFILE, &lim);
	}

#define FAIL_ONCE(i, step, err, detail)                                      \
	do {                                                                 \
		if (!first_error[0])                                         \
			snprintf(first_error, sizeof(first_error), "%u:%s",  \
				 (unsigned)(i), errtext(step, err, detail)); \
		if (fds[i] >= 0)                                             \
			close(fds[i]);                                       \
		fds[i] = -1;                                                 \
	} while (0)

	for (uint32_t i = 0; i < count; i++) {
		const char *step;

		fds[i] = vsock_connect(SOCK_STREAM, cid, port, CONNECT_TIMEOUT_S,
				       &step);
		if (fds[i] < 0)
			FAIL_ONCE(i, step, errno, NULL);
	}
	for (uint32_t i = 0; i < count; i++) {
		if (fds[i] < 0)
			continue;
		snprintf(want, sizeof(want), "hello %u\n", i);
		if (write_all(fds[i], want, strlen(want)))
			FAIL_ONCE(i, "write", errno, NULL);
	}
	for (uint32_t i = 0; i < count; i++) {
		ssize_t n;

		if (fds[i] < 0)
			continue;
		snprintf(want, sizeof(want), "hello %u\n", i);
		n = read_line(fds[i], got, sizeof(got));
		if (n < 0)
			FAIL_ONCE(i, "read", errno, NULL);
		else if (strcmp(got, want))
			FAIL_ONCE(i, "read", 0, n ? "wrong_line" : "eof");
		else
			ok++;
	}
#undef FAIL_ONCE
	for (uint32_t i = 0; i < count; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	/* The error names the first connection that failed: error=<i>:<step>:... */
	if (ok == count) {
		result("MANY", "ok=%u of=%u", ok, count);
		return 0;
	}
	result("MANY", "ok=%u of=%u error=%s", ok, count, first_error);
	return 1;
}

static int cmd_connect(uint32_t cid, uint32_t port)
{
	const char *step;
	int fd = vsock_connect(SOCK_STREAM, cid, port, PROBE_TIMEOUT_S, &step);

	if (fd < 0) {
		result("CONNECT", "result=%s", errno_name(errno));
		return 0;
	}
	close(fd);
	result("CONNECT", "result=ok");
	return 0;
}

/* One seqpacket message into buf (of SEQ_BUFFER bytes); its full length,
 * which is more than SEQ_BUFFER if it was truncated, or -1. */
static ssize_t recv_message(int fd, unsigned char *buf, int *truncated)
{
	struct iovec iov = { .iov_base = buf, .iov_len = SEQ_BUFFER };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	do
		n = recvmsg(fd, &msg, MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	*truncated = n >= 0 && ((msg.msg_flags & MSG_TRUNC) || n > SEQ_BUFFER);
	return n;
}

static int send_message(int fd, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n >= 0 && (size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return n < 0 ? -1 : 0;
}

static int cmd_seq(uint32_t cid, uint32_t port, uint32_t count)
{
	static unsigned char out[SEQ_MAX_MESSAGE], in[SEQ_BUFFER];
	uint64_t total = 0;
	uint32_t ok = 0;
	const char *step, *error = NULL;
	int fd, truncated;

	fd = vsock_connect(SOCK_SEQPACKET, cid, port, CONNECT_TIMEOUT_S, &step);
	if (fd < 0) {
		error = errtext(step, errno, NULL);
		goto done;
	}
	for (uint32_t i = 0; i < count && !error; i++) {
		size_t size = 1 + (size_t)(prng_next() % SEQ_MAX_MESSAGE);
		ssize_t n;

		prng_fill(out, size);
		if (send_message(fd, out, size)) {
			error = errtext("send", errno, NULL);
			break;
		}
		total += size;
		n = recv_message(fd, in, &truncated);
		if (n < 0)
			error = errtext("recv", errno, NULL);
		else if (n == 0)
			error = errtext("recv", 0, "eof");
		else if (truncated)
			error = errtext("recv", 0, "truncated");
		else if ((size_t)n == size && !memcmp(in, out, size))
			ok++;
		/* A wrong echo is counted, not fatal: the next message is whole. */
	}
	close(fd);
done:
	if (!error && ok == count) {
		result("SEQ", "ok=%u of=%u bytes=%llu", ok, count,
		       (unsigned long long)total);
		return 0;
	}
	result("SEQ", "ok=%u of=%u bytes=%llu error=%s", ok, count,
	       (unsigned long long)total,
	       error ? error : errtext("verify", 0, "echo_differs"));
	return 1;
}

static int cmd_seqrecv(uint32_t port, uint32_t count)
{
	static unsigned char buf[SEQ_BUFFER];
	struct sockaddr_vm peer;
	uint64_t total = 0;
	uint32_t ok = 0, crc = 0;
	const char *error = NULL;
	int fd, truncated;

	fd = accept_one("SEQRECV", SOCK_SEQPACKET, port, &peer);
	if (fd < 0)
		return 1;
	while (ok < count) {
		ssize_t n = recv_message(fd, buf, &truncated);

		if (n < 0) {
			error = errtext("recv", errno, NULL);
			break;
		}
		if (n == 0) {
			error = errtext("recv", 0, "eof");
			break;
		}
		if (truncated) {
			error = errtext("recv", 0, "truncated");
			break;
		}
		crc = crc32_update(crc, buf, (size_t)n);
		total += (uint64_t)n;
		if (send_message(fd, buf, (size_t)n)) {
			error = errtext("send", errno, NULL);
			break;
		}
		ok++;
	}
	if (error) {
		result("SEQRECV", "ok=%u sizes_crc=%08x bytes=%llu error=%s", ok,
		       crc, (unsigned long long)total, error);
		close(fd);
		return 1;
	}
	result("SEQRECV", "ok=%u sizes_crc=%08x bytes=%llu", ok, crc,
	       (unsigned long long)total);
	/* The report is out; now let the peer close first. */
	for (;;) {
		ssize_t n = recv_message(fd, buf, &truncated);

		if (n <= 0) {
			if (n < 0)
				fprintf(stderr, "%s: seqrecv: waiting for EOF: %s\n",
					argv0, strerror(errno));
			close(fd);
			return n < 0;
		}
	}
}

/* One connection of `echo`, in its own process. */
static int echo_connection(int fd)
{
	static unsigned char buf[CHUNK];

	for (;;) {
		ssize_t n = read_some(fd, buf, sizeof(buf));

		if (n < 0)
			return 1;
		if (n == 0)
			break;
		if (write_all(fd, buf, (size_t)n))
			return 1;
	}
	shutdown(fd, SHUT_WR);
	close(fd);
	return 0;
}

static int cmd_echo(uint32_t port)
{
	struct sockaddr_vm peer;
	const char *step;
	int listener;

	signal(SIGCHLD, SIG_IGN); /* children reap themselves */
	listener = vsock_listen(SOCK_STREAM, port, &step);
	if (listener < 0) {
		result("ECHO", "error=%s", errtext(step, errno, NULL));
		return 1;
	}
	for (;;) {
		int fd = vsock_accept(listener, &peer);
		pid_t pid;

		if (fd < 0) {
			fprintf(stderr, "%s: echo: accept: %s\n", argv0,
				strerror(errno));
			sleep(1);
			continue;
		}
		pid = fork();
		if (pid == 0) {
			close(listener);
			_exit(echo_connection(fd));
		}
		if (pid < 0)
			fprintf(stderr, "%s: echo: fork: %s\n", argv0,
				strerror(errno));
		close(fd);
	}
}

/* The kernel's trace_marker with VSOCK_TRACE set, else -1 (see the top). */
static int trace_fd = -1;

static void trace_open(void)
{
	if (getenv("VSOCK_TRACE"))
		trace_fd = open("/sys/kernel/tracing/trace_marker", O_WRONLY);
}

static void trace_mark(const char *fmt, ...)
{
	char line[128];
	va_list ap;
	int n;

	if (trace_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		write(trace_fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* A TCP connection to "A.B.C.D:PORT" (retried for CONNECT_TIMEOUT_S while
 * refused), or one accepted on PORT when listen is set; Nagle off: a signal
 * is one byte that must leave at once. */
static int tcp_open(const char *spec, int listen_, const char **step)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	const char *colon = strrchr(spec, ':');
	char host[32];
	uint32_t port;
	uint64_t deadline = now_ms() + CONNECT_TIMEOUT_S * 1000;
	int fd, listener, one = 1;

	*step = "signal_spec";
	errno = EINVAL;
	if (listen_) {
		if (parse_u32(spec, &port) || port > 0xffff)
			return -1;
		addr.sin_addr.s_addr = htonl(INADDR_ANY);
	} else {
		if (!colon || (size_t)(colon - spec) >= sizeof(host) ||
		    parse_u32(colon + 1, &port) || port > 0xffff)
			return -1;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = 0;
		if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
			return -1;
	}
	addr.sin_port = htons((uint16_t)port);
	if (listen_) {
		*step = "signal_listen";
		listener = socket(AF_INET, SOCK_STREAM, 0);
		if (listener < 0)
			return -1;
		setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) ||
		    listen(listener, 1))
			return -1;
		result("LISTENING", "port=%u", port);
		*step = "signal_accept";
		do
			fd = accept(listener, NULL, NULL);
		while (fd < 0 && errno == EINTR);
		close(listener);
	} else {
		*step = "signal_connect";
		for (;;) {
			fd = socket(AF_INET, SOCK_STREAM, 0);
			if (fd < 0)
				return -1;
			if (!connect(fd, (struct sockaddr *)&addr, sizeof(addr)))
				break;
			close(fd);
			if (errno != ECONNREFUSED || now_ms() > deadline)
				return -1;
			usleep(100000);
		}
	}
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* The signal channel of shutrd / shutpeer (see the top): an fd, or -1 with
 * *step naming what failed. */
static int signal_open(const char *spec, const char **step)
{
	struct sockaddr_vm peer;
	uint32_t cid, port;
	char *end;
	int listener, fd;

	trace_open();
	if (!strncmp(spec, "tcp:", 4))
		return tcp_open(spec + 4, 0, step);
	if (!strncmp(spec, "tcp-listen:", 11))
		return tcp_open(spec + 11, 1, step);

	if (!strncmp(spec, "vsock:", 6)) {
		cid = (uint32_t)strtoul(spec + 6, &end, 0);
		if (*end != ':' || parse_u32(end + 1, &port)) {
			*step = "signal_spec";
			errno = EINVAL;
			return -1;
		}
		return vsock_connect(SOCK_STREAM, cid, port, CONNECT_TIMEOUT_S, step);
	}
	if (!strncmp(spec, "vsock-listen:", 13)) {
		if (parse_u32(spec + 13, &port)) {
			*step = "signal_spec";
			errno = EINVAL;
			return -1;
		}
		listener = vsock_listen(SOCK_STREAM, port, step);
		if (listener < 0)
			return -1;
		*step = "signal_accept";
		fd = vsock_accept(listener, &peer);
		close(listener);
		return fd;
	}
	*step = "open_signal";
	return open(spec, O_RDWR | O_NOCTTY);
}

/* One byte from the signal channel (blocking); the byte, or -1. */
static int signal_read(int fd)
{
	unsigned char byte;
	ssize_t n = read_some(fd, &byte, 1);

	if (n == 1)
		return byte;
	if (n == 0)
		errno = EPIPE;
	return -1;
}

static int signal_write(int fd, char byte)
{
	return write_all(fd, &byte, 1);
}

static int cmd_shutrd(uint32_t cid, uint32_t port, const char *signal_path, uint32_t count)
{
	const char *step;
	uint32_t i, ok = 0;
	int sig, fd = -1, verdict;
	uint64_t deadline = now_ms() + 60 * 1000;

	/* Through QEMU's user networking a connection is taken before the peer
	 * listens, then closed: try again until the peer's 'L' comes. */
	for (;;) {
		sig = signal_open(signal_path, &step);
		if (sig < 0)
			goto fail;
		step = "wait_listening";
		if (signal_read(sig) == 'L')
			break;
		close(sig);
		if (strncmp(signal_path, "tcp:", 4) || now_ms() > deadline)
			goto fail;
		usleep(200000);
	}
	for (i = 0; i < count; i++) {
		fd = vsock_connect(SOCK_STREAM, cid, port, CONNECT_TIMEOUT_S, &step);
		if (fd < 0)
			goto fail;
		step = "shutdown";
		trace_mark("shutrd %u: shutdown", i);
		if (shutdown(fd, SHUT_RD))
			goto fail;
		/* The peer learns of it here, not over vsock: its send must fail. */
		step = "signal";
		trace_mark("shutrd %u: signal", i);
		if (signal_write(sig, 'S'))
			goto fail;
		trace_mark("shutrd %u: signalled", i);
		step = "verdict";
		verdict = signal_read(sig);
		if (verdict < 0)
			goto fail;
		if (verdict == 'P')
			ok++;
		close(fd);
		fd = -1;
	}
	close(sig);
	result("SHUTRD", "ok=%u of=%u", ok, count);
	return ok == count ? 0 : 1;
fail:
	result("SHUTRD", "ok=%u of=%u error=%s", ok, count, errtext(step, errno, NULL));
	return 1;
}

static int cmd_shutpeer(uint32_t port, const char *signal_path, uint32_t count)
{
	struct sockaddr_vm peer;
	const char *step;
	char miss[32] = "", late[256] = "";
	size_t late_len = 0;
	uint32_t i, epipe = 0, miss_at = 0, misses = 0;
	int sig, listener, fd;

	listener = vsock_listen(SOCK_STREAM, port, &step);
	if (listener < 0)
		goto fail;
	sig = signal_open(signal_path, &step);
	if (sig < 0)
		goto fail;
	step = "signal_listening";
	if (signal_write(sig, 'L'))
		goto fail;
	for (i = 0; i < count; i++) {
		ssize_t n;
		int piped;

		step = "accept";
		fd = vsock_accept(listener, &peer);
		if (fd < 0)
			goto fail;
		step = "wait_shutdown";
		if (signal_read(sig) != 'S')
			goto fail;
		trace_mark("shutpeer %u: signal read", i);
		n = send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		piped = n < 0 && errno == EPIPE;
		trace_mark("shutpeer %u: send %s", i, piped ? "EPIPE" : "MISSED");
		if (piped) {
			epipe++;
		} else {
			uint64_t start = now_us(), waited = 0;
			long late_us = -1;

			if (!*miss) {
				if (n >= 0)
					snprintf(miss, sizeof(miss), "sent_%zd", n);
				else
					snprintf(miss, sizeof(miss), "%s", errno_name(errno));
				miss_at = i;
			}
			misses++;
			/* How late the shutdown came: send again until EPIPE (1 s). */
			while (waited < 1000000) {
				usleep(50);
				waited = now_us() - start;
				n = send(fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n < 0 && errno == EPIPE) {
					late_us = (long)waited;
					break;
				}
			}
			trace_mark("shutpeer %u: EPIPE after %ld us", i, late_us);
			if (late_len < sizeof(late) - 16)
				late_len += (size_t)snprintf(late + late_len, sizeof(late) - late_len,
							     "%s%ld", late_len ? "," : "", late_us);
		}
		step = "verdict";
		if (signal_write(sig, piped ? 'P' : 'M'))
			goto fail;
		close(fd);
	}
	close(listener);
	close(sig);
	if (*miss) {
		result("SHUTPEER", "epipe=%u of=%u miss=%s miss_at=%u misses=%u late_us=%s",
		       epipe, count, miss, miss_at, misses, late);
		return 1;
	}
	result("SHUTPEER", "epipe=%u of=%u", epipe, count);
	return 0;
fail:
	result("SHUTPEER", "epipe=%u of=%u error=%s", epipe, count,
	       errtext(step, errno, NULL));
	return 1;
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	uint32_t cid, port, count;
	uint64_t nbytes;

	if (argc > 0 && argv[0][0])
		argv0 = argv[0];
	signal(SIGPIPE, SIG_IGN); /* EPIPE instead of dying on a reset peer */
	crc32_init();

	if (!strcmp(cmd, "send")) {
		if (argc != 5 || parse_u32(argv[2], &cid) ||
		    parse_u32(argv[3], &port) ||
		    parse_u64(argv[4], UINT64_MAX, &nbytes))
			return usage_error("SEND", "send_CID_PORT_NBYTES");
		return cmd_send(cid, port, nbytes);
	}
	if (!strcmp(cmd, "recv")) {
		if (argc != 3 || parse_u32(argv[2], &port))
			return usage_error("RECV", "recv_PORT");
		return cmd_recv(port);
	}
	if (!strcmp(cmd, "many")) {
		if (argc != 5 || parse_u32(argv[2], &cid) ||
		    parse_u32(argv[3], &port) || parse_u32(argv[4], &count) ||
		    count == 0)
			return usage_error("MANY", "many_CID_PORT_COUNT");
		return cmd_many(cid, port, count);
	}
	if (!strcmp(cmd, "connect")) {
		if (argc != 4 || parse_u32(argv[2], &cid) ||
		    parse_u32(argv[3], &port))
			return usage_error("CONNECT", "connect_CID_PORT");
		return cmd_connect(cid, port);
	}
	if (!strcmp(cmd, "seq")) {
		if (argc != 5 || parse_u32(argv[2], &cid) ||
		    parse_u32(argv[3], &port) || parse_u32(argv[4], &count) ||
		    count == 0)
			return usage_error("SEQ", "seq_CID_PORT_COUNT");
		return cmd_seq(cid, port, count);
	}
	if (!strcmp(cmd, "seqrecv")) {
		if (argc != 4 || parse_u32(argv[2], &port) ||
		    parse_u32(argv[3], &count) || count == 0)
			return usage_error("SEQRECV", "seqrecv_PORT_COUNT");
		return cmd_seqrecv(port, count);
	}
	if (!strcmp(cmd, "echo")) {
		if (argc != 3 || parse_u32(argv[2], &port))
			return usage_error("ECHO", "echo_PORT");
		return cmd_echo(port);
	}
	if (!strcmp(cmd, "shutrd")) {
		if (argc != 6 || parse_u32(argv[2], &cid) ||
		    parse_u32(argv[3], &port) || parse_u32(argv[5], &count) ||
		    count == 0)
			return usage_error("SHUTRD", "shutrd_CID_PORT_SIGNAL_COUNT");
		return cmd_shutrd(cid, port, argv[4], count);
	}
	if (!strcmp(cmd, "shutpeer")) {
		if (argc != 5 || parse_u32(argv[2], &port) ||
		    parse_u32(argv[4], &count) || count == 0)
			return usage_error("SHUTPEER", "shutpeer_PORT_SIGNAL_COUNT");
		return cmd_shutpeer(port, argv[3], count);
	}
	return usage_error("USAGE", *cmd ? "unknown_subcommand" : "no_subcommand");
}
