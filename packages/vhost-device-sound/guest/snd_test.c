/*
 * snd-test: play, capture and mixer checks for the test guest's sound card.
 *
 * The guest is a busybox initramfs: there is no alsa-lib and no aplay, so this
 * program talks to the kernel's ALSA character devices directly through the
 * ioctls of <sound/asound.h>. It is built statically on the host
 * (tests/guest_snd.py) and copied into each boot's initramfs.
 *
 * Subcommands (options may come anywhere after the subcommand):
 *   play SECONDS     a sine tone to /dev/snd/pcmC0D0p, rounded up to whole
 *                    periods, then DRAIN. Reports what HW_PARAMS settled on
 *                    (device format rate channels period_frames periods
 *                    buffer_frames start_threshold), then frames, xruns,
 *                    expected (frames / rate), elapsed (CLOCK_MONOTONIC seconds
 *                    from the start of the stream to the end of the drain),
 *                    drain_at (when DRAIN was called, on the same clock),
 *                    drain (how long it took) and extra_delay (the most, in
 *                    frames, that the delay ALSA reported after a write
 *                    exceeded the frames not yet played by the hardware
 *                    pointer: the device's latency_bytes). The stream starts when the
 *                    start threshold is reached, or at DRAIN if it never is.
 *   capture SECONDS  from /dev/snd/pcmC0D0c, raw interleaved samples to --out
 *                    (default stdout: the report then goes to stderr), read a
 *                    period at a time; elapsed runs from START (or, with
 *                    --start-threshold, from the first read, which starts the
 *                    stream) to the last frame read. Reports as play (without
 *                    drain), plus bytes, samples, peak and rms (in sample
 *                    units, from silence), nonzero (samples that are not
 *                    silence) and crossings (sign changes of channel 0, about
 *                    twice a tone's frequency per second).
 *   pcm-info         what the driver allows before anything is pinned: formats
 *                    and rates (lists), rate channels period_frames
 *                    period_bytes periods buffer_frames buffer_bytes (min-max).
 *   ctl-list         count, then one record per control element: numid iface
 *                    name index type access count, min max step (integers) or
 *                    items (enumerated), and value=v1,v2,... when readable.
 *   ctl-get NAME     that element's record.
 *   ctl-set NAME VALUE...  write it, then its record as read back.
 * If HW_PARAMS is refused, the report says which constraint the driver
 * rejected (refused=channels allowed=1-2, say) or refused=device when the
 * driver accepted them all and the device itself said no.
 *
 * Output is for machines. Every line of the report is made of key=value
 * tokens separated by one space; values that a shell would split are
 * double-quoted with backslash escapes (Python's shlex reads them back).
 * The first line is "cmd=<subcommand>" so a script may run several
 * subcommands and a test can still tell the reports apart. A line with a
 * single token is a field of the report; a line with several tokens is a
 * record (one per control element). On failure the report ends with
 * error=<step> errno=<n> strerror=<text> and the exit status is 1 (2 for a
 * usage error).
 *
 * Build: gcc -static -O2 -Wall -Wextra -o snd-test snd_test.c -lm
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <sound/asound.h>

#define USAGE                                                                  \
	"usage: snd-test play SECONDS [PCM options]\n"                         \
	"       snd-test capture SECONDS [PCM options] [--out PATH]\n"         \
	"       snd-test pcm-info [--capture] [--device PATH]\n"               \
	"       snd-test ctl-list [--device PATH]\n"                           \
	"       snd-test ctl-get NAME [--device PATH]\n"                       \
	"       snd-test ctl-set NAME VALUE... [--device PATH]\n"              \
	"PCM options: --rate R (48000) --channels C (2)\n"                     \
	"  --format s8|u8|s16|u16|s32|u32|float (s16)\n"                       \
	"  --period-frames N (1024) --periods N (4) --freq HZ (440)\n"         \
	"  --frames N (instead of SECONDS: exactly N frames; play rounds up to\n" \
	"    whole periods)\n"                                                 \
	"  --start-threshold N (frames; play: the buffer, capture: explicit\n"  \
	"    START)\n"                                                         \
	"  --stall MS (pause once, halfway, to provoke one xrun)\n"           \
	"  --device PATH (/dev/snd/pcmC0D0p or /dev/snd/pcmC0D0c)\n"

/* Where report lines go: stdout, except when captured samples take stdout. */
static FILE *report;

/* ---------------------------------------------------------------- report */

/* A value can go unquoted when no shell (or shlex) would split or unescape it. */
static int plain(const char *value)
{
	if (!*value)
		return 0;
	for (const char *c = value; *c; c++)
		if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') ||
		      ('0' <= *c && *c <= '9') || strchr("-_.,:/+%@", *c)))
			return 0;
	return 1;
}

/* One key=value token; `sep` is what goes before it (nothing or a space). */
static void token(const char *sep, const char *key, const char *value)
{
	fprintf(report, "%s%s=", sep, key);
	if (plain(value)) {
		fputs(value, report);
		return;
	}
	fputc('"', report);
	for (const char *c = value; *c; c++) {
		if (*c == '"' || *c == '\\')
			fputc('\\', report);
		fputc(*c, report);
	}
	fputc('"', report);
}

/* A report field: one key=value line built from a printf format. */
static void field(const char *key, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void field(const char *key, const char *fmt, ...)
{
	char value[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	token("", key, value);
	fputc('\n', report);
}

/* Report a failed step and give the exit status for it. */
static int fail(const char *step, int err)
{
	field("error", "%s", step);
	field("errno", "%d", err);
	field("strerror", "%s", strerror(err));
	return 1;
}

static int usage(const char *why)
{
	field("error", "usage");
	field("reason", "%s", why);
	fputs(USAGE, stderr);
	return 2;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ----------------------------------------------------------- sample formats */

/*
 * The formats a virtio-snd device may offer that are plain linear PCM, with
 * how to turn a value in [-1, 1] into a sample and back. Unsigned formats
 * have their silence at `offset`; the statistics are taken relative to it.
 */
struct format {
	const char *name;
	int alsa;
	unsigned int bytes;
	double scale;  /* full-scale amplitude */
	double offset; /* the value of silence */
};

static const struct format formats[] = {
	{ "s8", SNDRV_PCM_FORMAT_S8, 1, 127.0, 0.0 },
	{ "u8", SNDRV_PCM_FORMAT_U8, 1, 127.0, 128.0 },
	{ "s16", SNDRV_PCM_FORMAT_S16_LE, 2, 32767.0, 0.0 },
	{ "u16", SNDRV_PCM_FORMAT_U16_LE, 2, 32767.0, 32768.0 },
	{ "s32", SNDRV_PCM_FORMAT_S32_LE, 4, 2147483647.0, 0.0 },
	{ "u32", SNDRV_PCM_FORMAT_U32_LE, 4, 2147483647.0, 2147483648.0 },
	{ "float", SNDRV_PCM_FORMAT_FLOAT_LE, 4, 1.0, 0.0 },
};
#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

static const struct format *format_by_name(const char *name)
{
	for (size_t i = 0; i < NFORMATS; i++)
		if (!strcmp(formats[i].name, name))
			return &formats[i];
	return NULL;
}

/* Store `v` (in [-1, 1]) as one sample at `dst`; the guest is little-endian. */
static void put_sample(const struct format *f, double v, unsigned char *dst)
{
	double x = round(v * f->scale) + f->offset;

	switch (f->alsa) {
	case SNDRV_PCM_FORMAT_S8: { int8_t s = (int8_t)x; memcpy(dst, &s, 1); break; }
	case SNDRV_PCM_FORMAT_U8: { uint8_t s = (uint8_t)x; memcpy(dst, &s, 1); break; }
	case SNDRV_PCM_FORMAT_S16_LE: { int16_t s = (int16_t)x; memcpy(dst, &s, 2); break; }
	case SNDRV_PCM_FORMAT_U16_LE: { uint16_t s = (uint16_t)x; memcpy(dst, &s, 2); break; }
	case SNDRV_PCM_FORMAT_S32_LE: { int32_t s = (int32_t)x; memcpy(dst, &s, 4); break; }
	case SNDRV_PCM_FORMAT_U32_LE: { uint32_t s = (uint32_t)x; memcpy(dst, &s, 4); break; }
	default: { float s = (float)v; memcpy(dst, &s, 4); break; }
	}
}

/* One sample at `src`, as its distance from silence in the format's units. */
static double get_sample(const struct format *f, const unsigned char *src)
{
	switch (f->alsa) {
	case SNDRV_PCM_FORMAT_S8: { int8_t s; memcpy(&s, src, 1); return s; }
	case SNDRV_PCM_FORMAT_U8: { uint8_t s; memcpy(&s, src, 1); return s - f->offset; }
	case SNDRV_PCM_FORMAT_S16_LE: { int16_t s; memcpy(&s, src, 2); return s; }
	case SNDRV_PCM_FORMAT_U16_LE: { uint16_t s; memcpy(&s, src, 2); return s - f->offset; }
	case SNDRV_PCM_FORMAT_S32_LE: { int32_t s; memcpy(&s, src, 4); return s; }
	case SNDRV_PCM_FORMAT_U32_LE: { uint32_t s; memcpy(&s, src, 4); return s - f->offset; }
	default: { float s; memcpy(&s, src, 4); return s; }
	}
}

/* --------------------------------------------------------------- options */

struct options {
	const char *device;
	const char *out;
	const struct format *format;
	double seconds;
	double freq;
	unsigned int rate;
	unsigned int channels;
	unsigned int period_frames;
	unsigned int periods;
	unsigned int stall_ms;
	unsigned int frames;          /* 0: from seconds */
	unsigned int start_threshold; /* 0: the default (see pcm_open) */
	int capture; /* pcm-info: look at the capture device */
	int partial; /* play: no rounding up; drain as alsa-lib does */
	const char *positional[64];
	int npositional;
};

static int parse_uint(const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > UINT_MAX || *s == '-')
		return -1;
	*out = (unsigned int)v;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return (errno || end == s || *end || !(*out > 0)) ? -1 : 0;
}

/*
 * Options may come anywhere after the subcommand, as "--name value" or
 * "--name=value". A hand-written loop rather than getopt: ctl-set takes
 * negative numbers as values, which getopt would read as options.
 */
static const char *parse_options(int argc, char **argv, struct options *o)
{
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *value = NULL, *eq;
		char name[32];
		int bad = 0;

		if (strncmp(arg, "--", 2) || !arg[2]) {
			if (o->npositional == 64)
				return "too many arguments";
			o->positional[o->npositional++] = arg;
			continue;
		}
		eq = strchr(arg, '=');
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
		if (!strcmp(name, "--capture")) {
			o->capture = 1;
			continue;
		}
		if (!strcmp(name, "--partial")) {
			o->partial = 1;
			continue;
		}
		if (eq)
			value = eq + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			return "option without a value";

		if (!strcmp(name, "--device"))
			o->device = value;
		else if (!strcmp(name, "--out"))
			o->out = value;
		else if (!strcmp(name, "--format"))
			bad = !(o->format = format_by_name(value));
		else if (!strcmp(name, "--rate"))
			bad = parse_uint(value, &o->rate);
		else if (!strcmp(name, "--channels"))
			bad = parse_uint(value, &o->channels);
		else if (!strcmp(name, "--period-frames"))
			bad = parse_uint(value, &o->period_frames);
		else if (!strcmp(name, "--periods"))
			bad = parse_uint(value, &o->periods);
		else if (!strcmp(name, "--frames"))
			bad = parse_uint(value, &o->frames);
		else if (!strcmp(name, "--start-threshold"))
			bad = parse_uint(value, &o->start_threshold);
		else if (!strcmp(name, "--stall"))
			bad = parse_uint(value, &o->stall_ms);
		else if (!strcmp(name, "--freq"))
			bad = parse_double(value, &o->freq);
		else
			return "unknown option";
		if (bad)
			return "bad option value";
	}
	return NULL;
}

/* ------------------------------------------------------------ PCM setup */

static struct snd_mask *hw_mask(struct snd_pcm_hw_params *p, int param)
{
	return &p->masks[param - SNDRV_PCM_HW_PARAM_FIRST_MASK];
}

static struct snd_interval *hw_interval(struct snd_pcm_hw_params *p, int param)
{
	return &p->intervals[param - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];
}

/*
 * The "anything goes" configuration that alsa-lib's snd_pcm_hw_params_any()
 * starts from: every mask full, every interval [0, UINT_MAX], and rmask
 * asking the kernel to refine all of them against the driver's constraints.
 */
static void hw_any(struct snd_pcm_hw_params *p)
{
	memset(p, 0, sizeof(*p));
	for (int n = SNDRV_PCM_HW_PARAM_FIRST_MASK; n <= SNDRV_PCM_HW_PARAM_LAST_MASK; n++)
		memset(hw_mask(p, n), 0xff, sizeof(struct snd_mask));
	for (int n = SNDRV_PCM_HW_PARAM_FIRST_INTERVAL; n <= SNDRV_PCM_HW_PARAM_LAST_INTERVAL; n++)
		hw_interval(p, n)->max = UINT_MAX;
	p->rmask = ~0u;
	p->info = ~0u;
}

static void hw_set_mask(struct snd_pcm_hw_params *p, int param, unsigned int bit)
{
	struct snd_mask *m = hw_mask(p, param);

	memset(m, 0, sizeof(*m));
	m->bits[bit / 32] = 1u << (bit % 32);
}

static int hw_mask_test(struct snd_pcm_hw_params *p, int param, unsigned int bit)
{
	return !!(hw_mask(p, param)->bits[bit / 32] & (1u << (bit % 32)));
}

static void hw_set_interval(struct snd_pcm_hw_params *p, int param, unsigned int value)
{
	struct snd_interval *i = hw_interval(p, param);

	i->min = i->max = value;
	i->openmin = i->openmax = 0;
	i->integer = 1;
}

/* An interval as "min-max", closing the open ends the kernel may report. */
static void field_interval(const char *key, struct snd_pcm_hw_params *p, int param)
{
	struct snd_interval *i = hw_interval(p, param);

	field(key, "%u-%u", i->min + i->openmin, i->max - i->openmax);
}

struct pcm {
	int fd;
	const struct format *format;
	unsigned int rate, channels;
	unsigned long period_frames, buffer_frames;
	unsigned int frame_bytes;
	struct snd_pcm_sw_params sw; /* as set */
};

/* The constraints we place, in the order alsa-lib's users usually set them. */
struct constraint {
	const char *name;
	int param;
	unsigned int value;
};

static void constraints(const struct options *o, struct constraint c[7])
{
	struct constraint all[7] = {
		{ "access", SNDRV_PCM_HW_PARAM_ACCESS, SNDRV_PCM_ACCESS_RW_INTERLEAVED },
		{ "format", SNDRV_PCM_HW_PARAM_FORMAT, (unsigned int)o->format->alsa },
		{ "subformat", SNDRV_PCM_HW_PARAM_SUBFORMAT, SNDRV_PCM_SUBFORMAT_STD },
		{ "channels", SNDRV_PCM_HW_PARAM_CHANNELS, o->channels },
		{ "rate", SNDRV_PCM_HW_PARAM_RATE, o->rate },
		{ "period_frames", SNDRV_PCM_HW_PARAM_PERIOD_SIZE, o->period_frames },
		{ "periods", SNDRV_PCM_HW_PARAM_PERIODS, o->periods },
	};
	memcpy(c, all, sizeof(all));
}

/*
 * Pin one parameter. The kernel refines only the parameters flagged in rmask
 * (and clears it in what it returns), so flag everything again each time.
 */
static void apply(struct snd_pcm_hw_params *p, const struct constraint *c)
{
	if (c->param <= SNDRV_PCM_HW_PARAM_LAST_MASK)
		hw_set_mask(p, c->param, c->value);
	else
		hw_set_interval(p, c->param, c->value);
	p->rmask = ~0u;
}

/*
 * HW_PARAMS failed. The kernel does not say why, so replay the constraints
 * one at a time through HW_REFINE: the first one that empties the space is
 * what the driver refused, and the range left before it is what it allows.
 * If every constraint fits, the driver's hw_params callback failed, which for
 * virtio-snd means the device answered SET_PARAMS with an error.
 */
static void explain_refusal(int fd, const struct options *o)
{
	struct snd_pcm_hw_params p, before;
	struct constraint c[7];

	constraints(o, c);
	hw_any(&p);
	/* Not even "anything" refines: not a PCM device, or a broken one. */
	if (ioctl(fd, SNDRV_PCM_IOCTL_HW_REFINE, &p) < 0)
		return;
	for (int i = 0; i < 7; i++) {
		before = p;
		apply(&p, &c[i]);
		if (ioctl(fd, SNDRV_PCM_IOCTL_HW_REFINE, &p) < 0) {
			field("refused", "%s", c[i].name);
			if (c[i].param >= SNDRV_PCM_HW_PARAM_FIRST_INTERVAL)
				field_interval("allowed", &before, c[i].param);
			return;
		}
	}
	field("refused", "device");
}

/*
 * Open the PCM device and set it up: HW_PARAMS with every parameter pinned,
 * then SW_PARAMS, then PREPARE.
 */
static int pcm_open(struct pcm *pcm, const struct options *o, int capture)
{
	struct snd_pcm_hw_params p;
	struct snd_pcm_sw_params sw;
	struct constraint c[7];
	int version = SNDRV_PCM_VERSION;

	pcm->fd = open(o->device, O_RDWR | O_CLOEXEC);
	if (pcm->fd < 0)
		return fail("open", errno);
	/* Say which protocol we were built against, as alsa-lib does, so the
	 * kernel applies none of its compatibility paths for older user space. */
	ioctl(pcm->fd, SNDRV_PCM_IOCTL_USER_PVERSION, &version);

	constraints(o, c);
	hw_any(&p);
	for (int i = 0; i < 7; i++)
		apply(&p, &c[i]);
	if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_HW_PARAMS, &p) < 0) {
		int err = errno;

		explain_refusal(pcm->fd, o);
		return fail("hw_params", err);
	}
	pcm->format = o->format;
	pcm->rate = hw_interval(&p, SNDRV_PCM_HW_PARAM_RATE)->min;
	pcm->channels = hw_interval(&p, SNDRV_PCM_HW_PARAM_CHANNELS)->min;
	pcm->period_frames = hw_interval(&p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE)->min;
	pcm->buffer_frames = hw_interval(&p, SNDRV_PCM_HW_PARAM_BUFFER_SIZE)->min;
	pcm->frame_bytes = pcm->channels * o->format->bytes;
	field("device", "%s", o->device);
	field("format", "%s", o->format->name);
	field("rate", "%u", pcm->rate);
	field("channels", "%u", pcm->channels);
	field("period_frames", "%lu", pcm->period_frames);
	field("periods", "%u", hw_interval(&p, SNDRV_PCM_HW_PARAM_PERIODS)->min);
	field("buffer_frames", "%lu", pcm->buffer_frames);

	memset(&sw, 0, sizeof(sw));
	sw.tstamp_mode = SNDRV_PCM_TSTAMP_NONE;
	sw.period_step = 1;
	/* Wake us when a whole period can be transferred. */
	sw.avail_min = pcm->period_frames;
	/* Playback starts by itself once the buffer is full, so it never begins
	 * with an underrun. Capture is started with an explicit START, so that
	 * the clock runs from a known point. --start-threshold says otherwise,
	 * as alsa-lib's users do (a capture stream then starts at the read). */
	if (o->start_threshold)
		sw.start_threshold = o->start_threshold;
	else
		sw.start_threshold = capture ? 1 : pcm->buffer_frames;
	field("start_threshold", "%lu", (unsigned long)sw.start_threshold);
	/* Stop (xrun) as soon as the buffer runs dry (playback) or over
	 * (capture), so that lost real time shows up as EPIPE. */
	sw.stop_threshold = pcm->buffer_frames;
	sw.proto = SNDRV_PCM_VERSION;
	if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_SW_PARAMS, &sw) < 0)
		return fail("sw_params", errno);
	pcm->sw = sw;
	if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_PREPARE) < 0)
		return fail("prepare", errno);
	return 0;
}

/* ------------------------------------------------------------------ play */

/* Whether the stream has started (the kernel's view, from SNDRV_PCM_IOCTL_STATUS). */
static int pcm_running(int fd)
{
	struct snd_pcm_status st;

	memset(&st, 0, sizeof(st));
	if (ioctl(fd, SNDRV_PCM_IOCTL_STATUS, &st) < 0)
		return 0;
	return st.state == SNDRV_PCM_STATE_RUNNING || st.state == SNDRV_PCM_STATE_DRAINING;
}

/*
 * What the device adds to the delay ALSA reports (the pcm_status latency the
 * driver last got, runtime->delay): STATUS's delay less the frames written but
 * not yet played by the hardware pointer (the buffer less avail). -1 if the
 * stream is not running.
 */
static long pcm_extra_delay(int fd, unsigned long buffer_frames)
{
	struct snd_pcm_status st;

	memset(&st, 0, sizeof(st));
	if (ioctl(fd, SNDRV_PCM_IOCTL_STATUS, &st) < 0 || st.state != SNDRV_PCM_STATE_RUNNING)
		return -1;
	return (long)st.delay - (long)(buffer_frames - st.avail);
}

/* --stall: pause once, halfway through, to provoke exactly one xrun. */
static void maybe_stall(const struct options *o, unsigned long done, unsigned long total,
			int *stalled)
{
	struct timespec ts;

	if (!o->stall_ms || *stalled || done < total / 2)
		return;
	*stalled = 1;
	ts.tv_sec = o->stall_ms / 1000;
	ts.tv_nsec = (long)(o->stall_ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int cmd_play(const struct options *o)
{
	struct pcm pcm;
	unsigned char *buf;
	unsigned long total, written = 0, xruns = 0;
	long extra, extra_delay = 0;
	double phase = 0.0, start = 0.0, drain_at, end;
	int rc = pcm_open(&pcm, o, 0), stalled = 0, drain_err = 0;

	if (rc)
		return rc;
	/*
	 * Whole periods only: virtio_snd hands a period to the device once it
	 * is complete, so a partial last period would never play and DRAIN
	 * would time out (EIO). The tone is rounded up to a period.
	 */
	total = o->frames ? o->frames : (unsigned long)llround(o->seconds * pcm.rate);
	if (!o->partial)
		total = (total + pcm.period_frames - 1) / pcm.period_frames * pcm.period_frames;
	buf = malloc(pcm.period_frames * pcm.frame_bytes);
	if (!buf)
		return fail("malloc", ENOMEM);

	while (written < total) {
		unsigned long done = 0, chunk = total - written;

		if (chunk > pcm.period_frames)
			chunk = pcm.period_frames;
		/* The same sine on every channel, continuous across periods. */
		for (unsigned long f = 0; f < pcm.period_frames; f++) {
			double v = 0.5 * sin(phase);

			for (unsigned int ch = 0; ch < pcm.channels; ch++)
				put_sample(pcm.format, v,
					   buf + f * pcm.frame_bytes + ch * pcm.format->bytes);
			phase = fmod(phase + 2.0 * M_PI * o->freq / pcm.rate, 2.0 * M_PI);
		}
		maybe_stall(o, written, total, &stalled);
		while (done < chunk) {
			struct snd_xferi x = {
				.buf = buf + done * pcm.frame_bytes,
				.frames = chunk - done,
			};

			if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_WRITEI_FRAMES, &x) < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				if (errno != EPIPE)
					return fail("writei", errno);
				/* Underrun: the device consumed the buffer faster
				 * than we refilled it. Count it, re-prepare (the
				 * stream restarts once the buffer is full again)
				 * and go on with the rest of the tone. */
				xruns++;
				if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_PREPARE) < 0)
					return fail("prepare", errno);
				continue;
			}
			done += (unsigned long)x.result;
			/* Until the threshold is reached writes only fill the
			 * buffer: the clock runs from the stream's start. */
			if (!start && pcm_running(pcm.fd))
				start = now();
			extra = pcm_extra_delay(pcm.fd, pcm.buffer_frames);
			if (extra > extra_delay)
				extra_delay = extra;
		}
		written += chunk;
	}
	drain_at = now();
	/* What alsa-lib's snd_pcm_drain does for a hw PCM before DRAIN: have
	 * the kernel fill the rest of the period and 100 ms more with silence. */
	if (o->partial) {
		struct snd_pcm_sw_params sw = pcm.sw;
		unsigned long silence = pcm.period_frames - written % pcm.period_frames;

		if (silence == pcm.period_frames)
			silence = 0;
		silence += pcm.rate / 10;
		sw.silence_threshold = pcm.buffer_frames;
		sw.silence_size = silence < pcm.buffer_frames ? silence : pcm.buffer_frames;
		if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_SW_PARAMS, &sw) < 0)
			return fail("sw_params", errno);
	}
	if (!start)
		start = drain_at; /* DRAIN starts it */
	/* DRAIN returns once the device has played everything we wrote (it
	 * also starts a stream too short to have reached start_threshold). */
	while (ioctl(pcm.fd, SNDRV_PCM_IOCTL_DRAIN) < 0) {
		if (errno == EPIPE) {
			xruns++;
			break;
		}
		if (errno != EINTR) {
			drain_err = errno;
			break;
		}
	}
	end = now();
	/* Timings first, so that even a failed drain shows how far we got. */
	field("frames", "%lu", written);
	field("xruns", "%lu", xruns);
	field("expected", "%.3f", (double)written / pcm.rate);
	field("elapsed", "%.3f", end - start);
	field("drain_at", "%.3f", drain_at - start);
	field("drain", "%.3f", end - drain_at);
	field("extra_delay", "%ld", extra_delay);
	free(buf);
	close(pcm.fd);
	return drain_err ? fail("drain", drain_err) : 0;
}

/* --------------------------------------------------------------- capture */

/* Running statistics over captured samples, in the format's own units. */
struct stats {
	double peak, sumsq;
	unsigned long samples, nonzero, crossings;
	int last_sign; /* of channel 0's last non-zero sample: -1, 0 (none yet), 1 */
};

static void stats_add(struct stats *s, const struct pcm *pcm, const unsigned char *buf,
		      unsigned long frames)
{
	for (unsigned long f = 0; f < frames; f++) {
		for (unsigned int ch = 0; ch < pcm->channels; ch++) {
			double v = get_sample(pcm->format,
					      buf + f * pcm->frame_bytes + ch * pcm->format->bytes);

			s->samples++;
			s->sumsq += v * v;
			if (fabs(v) > s->peak)
				s->peak = fabs(v);
			if (v == 0)
				continue;
			s->nonzero++;
			/* Sign changes on channel 0: about 2 * frequency per
			 * second for a tone, a cheap check of what arrived. */
			if (ch == 0) {
				int sign = v > 0 ? 1 : -1;

				if (s->last_sign && sign != s->last_sign)
					s->crossings++;
				s->last_sign = sign;
			}
		}
	}
}

static int write_all(int fd, const unsigned char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int cmd_capture(const struct options *o)
{
	struct pcm pcm;
	struct stats st = { 0 };
	unsigned char *buf;
	unsigned long total, got = 0, xruns = 0;
	double start, elapsed;
	int out = 1, rc, stalled = 0;

	if (o->out && strcmp(o->out, "-")) {
		out = open(o->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out < 0)
			return fail("open-out", errno);
	}
	rc = pcm_open(&pcm, o, 1);
	if (rc)
		return rc;
	total = o->frames ? o->frames : (unsigned long)llround(o->seconds * pcm.rate);
	buf = malloc(pcm.period_frames * pcm.frame_bytes);
	if (!buf)
		return fail("malloc", ENOMEM);

	/* With a start threshold the first read starts the stream. */
	if (!o->start_threshold && ioctl(pcm.fd, SNDRV_PCM_IOCTL_START) < 0)
		return fail("start", errno);
	start = now();
	while (got < total) {
		unsigned long n = total - got;
		struct snd_xferi x = { .buf = buf };

		x.frames = n < pcm.period_frames ? n : pcm.period_frames;
		maybe_stall(o, got, total, &stalled);
		if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_READI_FRAMES, &x) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno != EPIPE)
				return fail("readi", errno);
			/* Overrun: we did not read in time and the device
			 * wrote over unread frames. Count it and restart. */
			xruns++;
			if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_PREPARE) < 0)
				return fail("prepare", errno);
			if (!o->start_threshold && ioctl(pcm.fd, SNDRV_PCM_IOCTL_START) < 0)
				return fail("start", errno);
			continue;
		}
		stats_add(&st, &pcm, buf, (unsigned long)x.result);
		if (write_all(out, buf, (size_t)x.result * pcm.frame_bytes) < 0)
			return fail("write-out", errno);
		got += (unsigned long)x.result;
	}
	elapsed = now() - start;
	ioctl(pcm.fd, SNDRV_PCM_IOCTL_DROP);
	field("frames", "%lu", got);
	field("bytes", "%lu", got * pcm.frame_bytes);
	field("xruns", "%lu", xruns);
	field("expected", "%.3f", (double)got / pcm.rate);
	field("elapsed", "%.3f", elapsed);
	field("samples", "%lu", st.samples);
	field("peak", "%.10g", st.peak);
	field("rms", "%.10g", st.samples ? sqrt(st.sumsq / st.samples) : 0.0);
	field("nonzero", "%lu", st.nonzero);
	field("crossings", "%lu", st.crossings);
	free(buf);
	close(pcm.fd);
	if (out != 1)
		close(out);
	return 0;
}

/* -------------------------------------------------------------- pcm-info */

/* What the driver offers, before we pin anything: one HW_REFINE from "any". */
static int cmd_pcm_info(const struct options *o)
{
	static const unsigned int rates[] = { 5512, 8000, 11025, 16000, 22050, 32000, 44100,
					      48000, 64000, 88200, 96000, 176400, 192000, 384000 };
	struct snd_pcm_hw_params any, p;
	char list[512];
	size_t len = 0;
	int fd = open(o->device, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return fail("open", errno);
	hw_any(&any);
	if (ioctl(fd, SNDRV_PCM_IOCTL_HW_REFINE, &any) < 0)
		return fail("hw_refine", errno);
	field("device", "%s", o->device);

	list[0] = '\0';
	for (unsigned int bit = 0; bit <= (unsigned int)SNDRV_PCM_FORMAT_LAST; bit++) {
		const char *name = NULL;
		char number[16];

		if (!hw_mask_test(&any, SNDRV_PCM_HW_PARAM_FORMAT, bit))
			continue;
		for (size_t i = 0; i < NFORMATS; i++)
			if ((unsigned int)formats[i].alsa == bit)
				name = formats[i].name;
		/* Formats snd-test cannot generate still show, by ALSA number. */
		if (!name) {
			snprintf(number, sizeof(number), "alsa%u", bit);
			name = number;
		}
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", len ? "," : "", name);
	}
	field("formats", "%s", list);

	/* Which of the standard rates survive a refine on their own. */
	len = 0;
	list[0] = '\0';
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		struct constraint rate = { "rate", SNDRV_PCM_HW_PARAM_RATE, rates[i] };

		p = any;
		apply(&p, &rate);
		if (ioctl(fd, SNDRV_PCM_IOCTL_HW_REFINE, &p) == 0)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%u",
						len ? "," : "", rates[i]);
	}
	field("rates", "%s", list);
	field_interval("rate", &any, SNDRV_PCM_HW_PARAM_RATE);
	field_interval("channels", &any, SNDRV_PCM_HW_PARAM_CHANNELS);
	field_interval("period_frames", &any, SNDRV_PCM_HW_PARAM_PERIOD_SIZE);
	field_interval("period_bytes", &any, SNDRV_PCM_HW_PARAM_PERIOD_BYTES);
	field_interval("periods", &any, SNDRV_PCM_HW_PARAM_PERIODS);
	field_interval("buffer_frames", &any, SNDRV_PCM_HW_PARAM_BUFFER_SIZE);
	field_interval("buffer_bytes", &any, SNDRV_PCM_HW_PARAM_BUFFER_BYTES);
	close(fd);
	return 0;
}

/* ------------------------------------------------------------- controls */

static const char *iface_name(unsigned int iface)
{
	static const char *names[] = { "CARD", "HWDEP", "MIXER", "PCM",
				       "RAWMIDI", "TIMER", "SEQUENCER" };

	return iface < sizeof(names) / sizeof(names[0]) ? names[iface] : "UNKNOWN";
}

static const char *type_name(unsigned int type)
{
	static const char *names[] = { "NONE", "BOOLEAN", "INTEGER", "ENUMERATED",
				       "BYTES", "IEC958", "INTEGER64" };

	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "UNKNOWN";
}

/*
 * All element ids of the card: ask how many there are, then fetch them in
 * one go. Returns the count, or -errno; the caller frees *ids.
 */
static int ctl_ids(int fd, struct snd_ctl_elem_id **ids)
{
	struct snd_ctl_elem_list list;

	memset(&list, 0, sizeof(list));
	if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_LIST, &list) < 0)
		return -errno;
	*ids = calloc(list.count ? list.count : 1, sizeof(**ids));
	if (!*ids)
		return -ENOMEM;
	list.space = list.count;
	list.pids = *ids;
	if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_LIST, &list) < 0) {
		int err = errno;

		free(*ids);
		return -err;
	}
	return (int)list.used;
}

/* Find an element by its exact name (the first, if the name repeats). */
static int ctl_find(int fd, const char *name, struct snd_ctl_elem_id *out)
{
	struct snd_ctl_elem_id *ids;
	int n = ctl_ids(fd, &ids), rc = -ENOENT;

	if (n < 0)
		return n;
	for (int i = 0; i < n && rc; i++)
		if (!strcmp((const char *)ids[i].name, name)) {
			*out = ids[i];
			rc = 0;
		}
	free(ids);
	return rc;
}

/*
 * Print one element as a record line: identity, type, access, range and (if
 * readable) its current values, comma-separated, one per channel.
 */
static int ctl_print(int fd, const struct snd_ctl_elem_id *id)
{
	struct snd_ctl_elem_info info;
	struct snd_ctl_elem_value val;
	char buf[64], values[2048];
	size_t len = 0;

	memset(&info, 0, sizeof(info));
	info.id = *id;
	if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_INFO, &info) < 0)
		return fail("elem_info", errno);

	snprintf(buf, sizeof(buf), "%u", info.id.numid);
	token("", "numid", buf);
	token(" ", "iface", iface_name((unsigned int)info.id.iface));
	token(" ", "name", (const char *)info.id.name);
	snprintf(buf, sizeof(buf), "%u", info.id.index);
	token(" ", "index", buf);
	token(" ", "type", type_name((unsigned int)info.type));
	snprintf(buf, sizeof(buf), "%s%s%s%s",
		 info.access & SNDRV_CTL_ELEM_ACCESS_READ ? "r" : "",
		 info.access & SNDRV_CTL_ELEM_ACCESS_WRITE ? "w" : "",
		 info.access & SNDRV_CTL_ELEM_ACCESS_VOLATILE ? "v" : "",
		 info.access & SNDRV_CTL_ELEM_ACCESS_INACTIVE ? "i" : "");
	token(" ", "access", buf[0] ? buf : "-");
	snprintf(buf, sizeof(buf), "%u", info.count);
	token(" ", "count", buf);
	if (info.type == SNDRV_CTL_ELEM_TYPE_INTEGER) {
		snprintf(buf, sizeof(buf), "%ld", info.value.integer.min);
		token(" ", "min", buf);
		snprintf(buf, sizeof(buf), "%ld", info.value.integer.max);
		token(" ", "max", buf);
		snprintf(buf, sizeof(buf), "%ld", info.value.integer.step);
		token(" ", "step", buf);
	} else if (info.type == SNDRV_CTL_ELEM_TYPE_INTEGER64) {
		snprintf(buf, sizeof(buf), "%lld", info.value.integer64.min);
		token(" ", "min", buf);
		snprintf(buf, sizeof(buf), "%lld", info.value.integer64.max);
		token(" ", "max", buf);
	} else if (info.type == SNDRV_CTL_ELEM_TYPE_ENUMERATED) {
		snprintf(buf, sizeof(buf), "%u", info.value.enumerated.items);
		token(" ", "items", buf);
	}

	memset(&val, 0, sizeof(val));
	val.id = info.id;
	if ((info.access & SNDRV_CTL_ELEM_ACCESS_READ) &&
	    ioctl(fd, SNDRV_CTL_IOCTL_ELEM_READ, &val) == 0) {
		values[0] = '\0';
		for (unsigned int i = 0; i < info.count && i < 64; i++) {
			long long v;

			switch (info.type) {
			case SNDRV_CTL_ELEM_TYPE_BOOLEAN:
			case SNDRV_CTL_ELEM_TYPE_INTEGER:
				v = val.value.integer.value[i];
				break;
			case SNDRV_CTL_ELEM_TYPE_INTEGER64:
				v = val.value.integer64.value[i];
				break;
			case SNDRV_CTL_ELEM_TYPE_ENUMERATED:
				v = val.value.enumerated.item[i];
				break;
			default: /* bytes, IEC958: not for mixer tests */
				continue;
			}
			len += (size_t)snprintf(values + len, sizeof(values) - len, "%s%lld",
						len ? "," : "", v);
		}
		if (len)
			token(" ", "value", values);
	}
	fputc('\n', report);
	return 0;
}

static int ctl_open(const struct options *o)
{
	return open(o->device, O_RDWR | O_CLOEXEC);
}

static int cmd_ctl_list(const struct options *o)
{
	struct snd_ctl_elem_id *ids;
	int fd = ctl_open(o), n, rc = 0;

	if (fd < 0)
		return fail("open", errno);
	n = ctl_ids(fd, &ids);
	if (n < 0)
		return fail("elem_list", -n);
	field("count", "%d", n);
	for (int i = 0; i < n && !rc; i++)
		rc = ctl_print(fd, &ids[i]);
	free(ids);
	close(fd);
	return rc;
}

static int cmd_ctl_get(const struct options *o)
{
	struct snd_ctl_elem_id id;
	int fd = ctl_open(o), rc;

	if (fd < 0)
		return fail("open", errno);
	rc = ctl_find(fd, o->positional[0], &id);
	if (rc < 0)
		return fail("find", -rc);
	return ctl_print(fd, &id);
}

/* A value for a BOOLEAN element: 0/1 or the usual words. */
static int parse_bool(const char *s, long *out)
{
	static const char *yes[] = { "1", "on", "true", "yes" }, *no[] = { "0", "off", "false", "no" };

	for (int i = 0; i < 4; i++) {
		if (!strcmp(s, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/*
 * Write the element's values. Fewer values than channels repeat the last one,
 * so "ctl-set 'Master Playback Volume' 50" sets every channel. The element is
 * read back and printed afterwards: the test sees what the device kept.
 */
static int cmd_ctl_set(const struct options *o)
{
	struct snd_ctl_elem_info info;
	struct snd_ctl_elem_value val;
	int fd = ctl_open(o), rc, nvalues = o->npositional - 1;

	if (fd < 0)
		return fail("open", errno);
	memset(&info, 0, sizeof(info));
	rc = ctl_find(fd, o->positional[0], &info.id);
	if (rc < 0)
		return fail("find", -rc);
	if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_INFO, &info) < 0)
		return fail("elem_info", errno);
	if ((unsigned int)nvalues > info.count)
		return usage("more values than the element has channels");

	memset(&val, 0, sizeof(val));
	val.id = info.id;
	for (unsigned int i = 0; i < info.count && i < 64; i++) {
		unsigned int k = i < (unsigned int)nvalues ? i : (unsigned int)nvalues - 1;
		const char *arg = o->positional[1 + k];
		char *end;
		long v;

		if (info.type == SNDRV_CTL_ELEM_TYPE_BOOLEAN) {
			if (parse_bool(arg, &v))
				return usage("boolean values are 0/1/on/off/true/false/yes/no");
			val.value.integer.value[i] = v;
			continue;
		}
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno || end == arg || *end)
			return usage("values must be integers");
		if (info.type == SNDRV_CTL_ELEM_TYPE_INTEGER)
			val.value.integer.value[i] = v;
		else if (info.type == SNDRV_CTL_ELEM_TYPE_INTEGER64)
			val.value.integer64.value[i] = v;
		else if (info.type == SNDRV_CTL_ELEM_TYPE_ENUMERATED)
			val.value.enumerated.item[i] = (unsigned int)v;
		else
			return fail("type", EOPNOTSUPP);
	}
	if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_WRITE, &val) < 0)
		return fail("elem_write", errno);
	return ctl_print(fd, &info.id);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	struct options o = {
		.format = &formats[2], /* s16 */
		.freq = 440.0,
		.rate = 48000,
		.channels = 2,
		.period_frames = 1024,
		.periods = 4,
	};
	const char *cmd = argc > 1 ? argv[1] : "";
	int pcm = !strcmp(cmd, "play") || !strcmp(cmd, "capture");
	const char *bad = parse_options(argc > 2 ? argc - 2 : 0, argv + 2, &o);

	/* Captured samples default to stdout; the report then moves to stderr. */
	report = !strcmp(cmd, "capture") && (!o.out || !strcmp(o.out, "-")) ? stderr : stdout;
	setvbuf(report, NULL, _IOLBF, 0);
	field("cmd", "%s", argc > 1 ? cmd : "none");
	if (bad)
		return usage(bad);
	if (!o.device) {
		if (!strcmp(cmd, "capture") || (!strcmp(cmd, "pcm-info") && o.capture))
			o.device = "/dev/snd/pcmC0D0c";
		else if (pcm || !strcmp(cmd, "pcm-info"))
			o.device = "/dev/snd/pcmC0D0p";
		else
			o.device = "/dev/snd/controlC0";
	}
	if (pcm && o.frames && o.npositional == 0)
		o.seconds = 0; /* --frames instead of SECONDS */
	else if (pcm && (o.npositional != 1 || parse_double(o.positional[0], &o.seconds)))
		return usage("play and capture take SECONDS (a positive number) or --frames");

	if (!strcmp(cmd, "play"))
		return cmd_play(&o);
	if (!strcmp(cmd, "capture"))
		return cmd_capture(&o);
	if (!strcmp(cmd, "pcm-info") && o.npositional == 0)
		return cmd_pcm_info(&o);
	if (!strcmp(cmd, "ctl-list") && o.npositional == 0)
		return cmd_ctl_list(&o);
	if (!strcmp(cmd, "ctl-get") && o.npositional == 1)
		return cmd_ctl_get(&o);
	if (!strcmp(cmd, "ctl-set") && o.npositional >= 2)
		return cmd_ctl_set(&o);
	return usage("unknown subcommand or wrong number of arguments");
}
