/* The guest side of the gpio tests: Linux's GPIO v2 character-device uAPI on the
 * virtio chip. Subcommands print one result line each, which the host test parses:
 *   info CHIP                     CHIP name=.. label=.. lines=N, then LINE i name=..
 *   output CHIP LINE              OUTPUT line=.. read1=.. read0=..
 *   edges CHIP LINE COUNT         requests both edges, prints EDGE-READY line=..,
 *                                 then EDGE line=.. type=rising|falling per event
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/gpio.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int open_chip(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("FAIL open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static int request(int chip, unsigned line, __u64 flags, int value)
{
	struct gpio_v2_line_request req;
	memset(&req, 0, sizeof(req));
	req.offsets[0] = line;
	req.num_lines = 1;
	req.config.flags = flags;
	if (flags & GPIO_V2_LINE_FLAG_OUTPUT) {
		req.config.num_attrs = 1;
		req.config.attrs[0].attr.id = GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES;
		req.config.attrs[0].attr.values = value ? 1 : 0;
		req.config.attrs[0].mask = 1;
	}
	strcpy(req.consumer, "gpio-test");
	if (ioctl(chip, GPIO_V2_GET_LINE_IOCTL, &req) < 0) {
		printf("FAIL request line %u: %s\n", line, strerror(errno));
		exit(1);
	}
	return req.fd;
}

static int get(int fd)
{
	struct gpio_v2_line_values values = {.bits = 0, .mask = 1};
	if (ioctl(fd, GPIO_V2_LINE_GET_VALUES_IOCTL, &values) < 0) {
		printf("FAIL get: %s\n", strerror(errno));
		exit(1);
	}
	return (int)(values.bits & 1);
}

static void set(int fd, int value)
{
	struct gpio_v2_line_values values = {.bits = value ? 1 : 0, .mask = 1};
	if (ioctl(fd, GPIO_V2_LINE_SET_VALUES_IOCTL, &values) < 0) {
		printf("FAIL set: %s\n", strerror(errno));
		exit(1);
	}
}

static int info(const char *path)
{
	int chip = open_chip(path);
	struct gpiochip_info ci;
	if (ioctl(chip, GPIO_GET_CHIPINFO_IOCTL, &ci) < 0) {
		printf("FAIL chipinfo: %s\n", strerror(errno));
		return 1;
	}
	printf("CHIP name=%s label=%s lines=%u\n", ci.name, ci.label, ci.lines);
	for (unsigned i = 0; i < ci.lines; i++) {
		struct gpio_v2_line_info li;
		memset(&li, 0, sizeof(li));
		li.offset = i;
		if (ioctl(chip, GPIO_V2_GET_LINEINFO_IOCTL, &li) < 0) {
			printf("FAIL lineinfo %u: %s\n", i, strerror(errno));
			return 1;
		}
		printf("LINE %u name=%s\n", i, li.name);
	}
	return 0;
}

static int output(const char *path, unsigned line)
{
	int chip = open_chip(path);
	int fd = request(chip, line, GPIO_V2_LINE_FLAG_OUTPUT, 1);
	int one = get(fd);
	set(fd, 0);
	int zero = get(fd);
	close(fd);
	printf("OUTPUT line=%u read1=%d read0=%d\n", line, one, zero);
	return 0;
}

static int edges(const char *path, unsigned line, int count)
{
	int chip = open_chip(path);
	int fd = request(chip, line,
			 GPIO_V2_LINE_FLAG_INPUT | GPIO_V2_LINE_FLAG_EDGE_RISING |
				 GPIO_V2_LINE_FLAG_EDGE_FALLING, 0);
	printf("EDGE-READY line=%u\n", line);
	fflush(stdout);
	for (int i = 0; i < count; i++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 60000) != 1) {
			printf("FAIL no edge in 60 s\n");
			return 1;
		}
		struct gpio_v2_line_event ev;
		if (read(fd, &ev, sizeof(ev)) != sizeof(ev)) {
			printf("FAIL read event: %s\n", strerror(errno));
			return 1;
		}
		printf("EDGE line=%u type=%s\n", ev.offset,
		       ev.id == GPIO_V2_LINE_EVENT_RISING_EDGE ? "rising" : "falling");
		fflush(stdout);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "info"))
		return info(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "output"))
		return output(argv[2], (unsigned)atoi(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "edges"))
		return edges(argv[2], (unsigned)atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: gpio_test info|output|edges CHIP [LINE [COUNT]]\n");
	return 2;
}
