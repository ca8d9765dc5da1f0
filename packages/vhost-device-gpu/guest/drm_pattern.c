/*
 * The guest side of vhost-device-gpu's real-guest test, on the kernel's DRM KMS ioctls
 * alone (the busybox guest has no libdrm; the uapi structs are declared here):
 *
 *   drm_pattern CONTROL_PORT
 *
 * prints the connector's modes (MODE WxH, the preferred one first), draws pattern 1
 * into a dumb buffer at the preferred mode and sets it on the CRTC, sets a 64x64 cursor
 * and moves it, prints "SHOT 1 WxH" and waits for a line on CONTROL_PORT (the host took
 * its screendump); then the same at 800x600 with pattern 2 ("SHOT 2 WxH").
 * Every pixel is a function of its position, so the host can check each one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct drm_mode_modeinfo {
    uint32_t clock;
    uint16_t hdisplay, hsync_start, hsync_end, htotal, hskew;
    uint16_t vdisplay, vsync_start, vsync_end, vtotal, vscan;
    uint32_t vrefresh, flags, type;
    char name[32];
};
struct drm_mode_card_res {
    uint64_t fb_id_ptr, crtc_id_ptr, connector_id_ptr, encoder_id_ptr;
    uint32_t count_fbs, count_crtcs, count_connectors, count_encoders;
    uint32_t min_width, max_width, min_height, max_height;
};
struct drm_mode_get_connector {
    uint64_t encoders_ptr, modes_ptr, props_ptr, prop_values_ptr;
    uint32_t count_modes, count_props, count_encoders;
    uint32_t encoder_id, connector_id, connector_type, connector_type_id, connection;
    uint32_t mm_width, mm_height, subpixel, pad;
};
struct drm_mode_create_dumb {
    uint32_t height, width, bpp, flags, handle, pitch;
    uint64_t size;
};
struct drm_mode_map_dumb {
    uint32_t handle, pad;
    uint64_t offset;
};
struct drm_mode_fb_cmd {
    uint32_t fb_id, width, height, pitch, bpp, depth, handle;
};
struct drm_mode_crtc {
    uint64_t set_connectors_ptr;
    uint32_t count_connectors, crtc_id, fb_id, x, y, gamma_size, mode_valid;
    struct drm_mode_modeinfo mode;
};
struct drm_mode_cursor {
    uint32_t flags, crtc_id;
    int32_t x, y;
    uint32_t width, height, handle;
};

#define DRM_IOWR(nr, type) _IOWR('d', nr, type)
#define DRM_IOCTL_MODE_GETRESOURCES DRM_IOWR(0xA0, struct drm_mode_card_res)
#define DRM_IOCTL_MODE_SETCRTC DRM_IOWR(0xA2, struct drm_mode_crtc)
#define DRM_IOCTL_MODE_CURSOR DRM_IOWR(0xA3, struct drm_mode_cursor)
#define DRM_IOCTL_MODE_GETCONNECTOR DRM_IOWR(0xA7, struct drm_mode_get_connector)
#define DRM_IOCTL_MODE_ADDFB DRM_IOWR(0xAE, struct drm_mode_fb_cmd)
#define DRM_IOCTL_MODE_CREATE_DUMB DRM_IOWR(0xB2, struct drm_mode_create_dumb)
#define DRM_IOCTL_MODE_MAP_DUMB DRM_IOWR(0xB3, struct drm_mode_map_dumb)
#define DRM_MODE_TYPE_PREFERRED (1 << 3)
#define DRM_MODE_CURSOR_BO 1
#define DRM_MODE_CURSOR_MOVE 2

static int fd;

static void die(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static void xioctl(unsigned long request, void *arg, const char *what) {
    while (ioctl(fd, request, arg) < 0) {
        if (errno != EINTR) die(what);
    }
}

/* Pattern n at (x, y), as an XRGB8888 word; the host computes the same. */
static uint32_t pattern(int n, uint32_t x, uint32_t y) {
    if (n == 1) return ((x * 7) & 0xff) << 16 | ((y * 5) & 0xff) << 8 | ((x ^ y) & 0xff);
    return ((y * 3) & 0xff) << 16 | (((x + y) * 2) & 0xff) << 8 | ((x * 11) & 0xff);
}

static uint32_t *dumb(uint32_t w, uint32_t h, uint32_t *handle, uint32_t *pitch) {
    struct drm_mode_create_dumb create = {.height = h, .width = w, .bpp = 32};
    xioctl(DRM_IOCTL_MODE_CREATE_DUMB, &create, "CREATE_DUMB");
    struct drm_mode_map_dumb map = {.handle = create.handle};
    xioctl(DRM_IOCTL_MODE_MAP_DUMB, &map, "MAP_DUMB");
    void *p = mmap(NULL, create.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, map.offset);
    if (p == MAP_FAILED) die("mmap");
    *handle = create.handle;
    *pitch = create.pitch;
    return p;
}

static void show(int n, uint32_t crtc, uint32_t connector, struct drm_mode_modeinfo *mode) {
    uint32_t w = mode->hdisplay, h = mode->vdisplay, handle, pitch;
    uint32_t *px = dumb(w, h, &handle, &pitch);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) px[y * (pitch / 4) + x] = pattern(n, x, y);
    struct drm_mode_fb_cmd fb = {
        .width = w, .height = h, .pitch = pitch, .bpp = 32, .depth = 24, .handle = handle};
    xioctl(DRM_IOCTL_MODE_ADDFB, &fb, "ADDFB");
    struct drm_mode_crtc set = {
        .set_connectors_ptr = (uintptr_t)&connector, .count_connectors = 1,
        .crtc_id = crtc, .fb_id = fb.fb_id, .mode_valid = 1, .mode = *mode};
    xioctl(DRM_IOCTL_MODE_SETCRTC, &set, "SETCRTC");
}

static int ctl;

/* Block until the host writes a line on the control port (it took its screendump). */
static void wait_host(void) {
    char line[16];
    for (int tries = 0; tries < 1200; tries++) {
        ssize_t n = read(ctl, line, sizeof line);
        if (n > 0) return;
        if (n < 0 && errno != EINTR && errno != EAGAIN) die("read control port");
        usleep(50000); /* 0: the host end is not connected yet */
    }
    errno = ETIMEDOUT;
    die("wait for the host");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONTROL_PORT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    ctl = open(argv[1], O_RDONLY);  /* open from the start: the host's line is kept */
    if (ctl < 0) die("open control port");
    fd = open("/dev/dri/card0", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open /dev/dri/card0");

    uint32_t crtcs[8], connectors[8];
    struct drm_mode_card_res res = {0};
    xioctl(DRM_IOCTL_MODE_GETRESOURCES, &res, "GETRESOURCES");
    if (!res.count_crtcs || !res.count_connectors) die("no CRTC or connector");
    res.count_crtcs = res.count_crtcs > 8 ? 8 : res.count_crtcs;
    res.count_connectors = res.count_connectors > 8 ? 8 : res.count_connectors;
    res.count_fbs = res.count_encoders = 0;
    res.crtc_id_ptr = (uintptr_t)crtcs;
    res.connector_id_ptr = (uintptr_t)connectors;
    xioctl(DRM_IOCTL_MODE_GETRESOURCES, &res, "GETRESOURCES");

    struct drm_mode_get_connector conn = {.connector_id = connectors[0]};
    xioctl(DRM_IOCTL_MODE_GETCONNECTOR, &conn, "GETCONNECTOR");
    uint32_t count = conn.count_modes;
    struct drm_mode_modeinfo *modes = calloc(count ? count : 1, sizeof *modes);
    memset(&conn, 0, sizeof conn);
    conn.connector_id = connectors[0];
    conn.count_modes = count;
    conn.modes_ptr = (uintptr_t)modes;
    xioctl(DRM_IOCTL_MODE_GETCONNECTOR, &conn, "GETCONNECTOR");
    printf("CONNECTION %u\n", conn.connection);
    int preferred = -1, second = -1;
    for (uint32_t i = 0; i < conn.count_modes; i++) {
        printf("MODE %ux%u%s\n", modes[i].hdisplay, modes[i].vdisplay,
               modes[i].type & DRM_MODE_TYPE_PREFERRED ? " preferred" : "");
        if (preferred < 0 && modes[i].type & DRM_MODE_TYPE_PREFERRED) preferred = i;
        if (second < 0 && modes[i].hdisplay == 800 && modes[i].vdisplay == 600) second = i;
    }
    if (preferred < 0 || second < 0) die("no preferred or no 800x600 mode");

    show(1, crtcs[0], connectors[0], &modes[preferred]);
    uint32_t handle, pitch;
    uint32_t *cur = dumb(64, 64, &handle, &pitch);
    for (uint32_t y = 0; y < 64; y++)
        for (uint32_t x = 0; x < 64; x++) cur[y * (pitch / 4) + x] = 0x80000000u | pattern(2, x, y);
    struct drm_mode_cursor c = {
        .flags = DRM_MODE_CURSOR_BO, .crtc_id = crtcs[0], .width = 64, .height = 64,
        .handle = handle};
    xioctl(DRM_IOCTL_MODE_CURSOR, &c, "CURSOR BO");
    struct drm_mode_cursor move = {.flags = DRM_MODE_CURSOR_MOVE, .crtc_id = crtcs[0], .x = 100, .y = 50};
    xioctl(DRM_IOCTL_MODE_CURSOR, &move, "CURSOR MOVE");
    printf("SHOT 1 %ux%u\n", modes[preferred].hdisplay, modes[preferred].vdisplay);
    wait_host();

    show(2, crtcs[0], connectors[0], &modes[second]);
    printf("SHOT 2 %ux%u\n", modes[second].hdisplay, modes[second].vdisplay);
    wait_host();
    printf("DONE\n");
    return 0;
}
