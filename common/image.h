/* image.h: RGB8 images, PNG/JPEG files (libpng, libjpeg) and image streams.
 *
 * An Image is (h, w, 3) uint8, row-major, RGB. Readers convert grey, palette, 16-bit
 * and alpha PNGs and grey JPEGs to RGB8 (alpha is dropped). Readers never die: they
 * return -1 with a one-line reason in err, so the caller names the file.
 *
 * Image stream (docs/STAIN.md): a header of kind "images" (features [], classes,
 * domains, extra key "tile" {h, w}), frames
 *   {type:"images", ids[], x u8 (N,H,W,3), y i32 (N), d i32 (N)}
 * and an end frame {type:"end", rows, frames}. Every image of a stream has the tile's
 * size. ImgOut writes one, ImgIn reads and checks one (through SReader). */
#ifndef DAPIPE_IMAGE_H
#define DAPIPE_IMAGE_H

#include "stream.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* largest image accepted: 2^28 pixels (16384 x 16384), side at most 65535 */
#define IMAGE_MAX_PIXELS ((int64_t)1 << 28)
#define IMAGE_MAX_SIDE 65535

typedef struct {
	int h, w;
	uint8_t *px;   /* h * w * 3, owned */
} Image;

enum { IMG_AUTO, IMG_PNG, IMG_JPEG };

void image_alloc(Image *im, int h, int w);
void image_free(Image *im);
/* a copy of the (th, tw) window at (y, x) of src; the window lies inside src */
void image_crop(Image *dst, const Image *src, int y, int x, int th, int tw);

/* Read a PNG or JPEG file (fmt IMG_AUTO decides by the file's magic bytes, never by its
 * name). 0 ok; -1 with a reason ("not a PNG or JPEG file", "truncated PNG", ...) in err. */
int image_read(const char *path, int fmt, Image *im, char *err, size_t errlen);
int image_read_mem(const unsigned char *buf, size_t len, int fmt, Image *im, char *err, size_t errlen);
/* Write a PNG to an open file; 0 ok, -1 with the reason in err. */
int image_write_png_fp(FILE *fp, const Image *im, char *err, size_t errlen);
/* Write a PNG through atomic_open/atomic_commit; dies with "PATH: reason". */
void image_write_png(const char *path, const Image *im);

/* ---- image streams ---- */
typedef struct {
	SWriter w;
	int th, tw;         /* tile size */
	int n, cap;         /* images buffered */
	char **ids;
	uint8_t *x;
	int32_t *y, *d;
	long rows, frames;
	size_t max_bytes;   /* a frame is sent when its pixels reach this many bytes */
} ImgOut;
/* Write the header (kind "images"; the "tile" key is set from th, tw; other keys of h
 * are kept). */
void imgout_start(ImgOut *o, FILE *fp, const char *name, const Header *h, int th, int tw);
void imgout_push(ImgOut *o, const char *id, const uint8_t *px, int32_t y, int32_t d);
void imgout_flush(ImgOut *o);    /* send buffered images as one frame */
void imgout_finish(ImgOut *o);   /* flush, end frame, fflush; frees the buffers */

typedef struct {
	int n;
	int th, tw;
	char **ids;
	uint8_t *x;   /* n * th * tw * 3 */
	int32_t *y, *d;
} ImgBlock;
void imgblock_free(ImgBlock *b);

typedef struct {
	SReader r;
	Header h;
	int th, tw;
	long rows, frames;
	int done;
} ImgIn;
/* open (path "-" is stdin), read and check the header (version, kind "images", tile) */
void imgin_open(ImgIn *in, const char *path);
/* 1: a block (replaces *b); 0: end frame seen and checked. Dies on anything malformed. */
int imgin_next(ImgIn *in, ImgBlock *b);
void imgin_close(ImgIn *in);

/* Do these first bytes (8 suffice) start like a stream (a msgpack map with a string
 * key)? (for --format auto) */
int image_sniff_stream(const unsigned char *buf, size_t len);

#endif
