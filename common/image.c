/* image.c: see image.h. */
#include "image.h"
#include "util.h"

#include <errno.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* a file larger than this is refused before it is read */
#define IMAGE_MAX_FILE ((size_t)1 << 30)

void image_alloc(Image *im, int h, int w)
{
	ASSERT(h >= 0 && w >= 0 && (int64_t)h * w <= IMAGE_MAX_PIXELS);
	im->h = h;
	im->w = w;
	im->px = xmallocarray((size_t)h * (size_t)w, 3);
}

void image_free(Image *im)
{
	free(im->px);
	im->px = NULL;
	im->h = im->w = 0;
}

void image_crop(Image *dst, const Image *src, int y, int x, int th, int tw)
{
	ASSERT(y >= 0 && x >= 0 && y + th <= src->h && x + tw <= src->w);
	image_alloc(dst, th, tw);
	for (int r = 0; r < th; r++)
		memcpy(dst->px + (size_t)r * tw * 3, src->px + ((size_t)(y + r) * src->w + x) * 3, (size_t)tw * 3);
}

static void seterr(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	if (!err || !n) return;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

static int check_size(long h, long w, char *err, size_t n)
{
	if (h <= 0 || w <= 0) { seterr(err, n, "zero-size image (%ldx%ld)", w, h); return -1; }
	if (h > IMAGE_MAX_SIDE || w > IMAGE_MAX_SIDE || (int64_t)h * w > IMAGE_MAX_PIXELS) {
		seterr(err, n, "image of %ldx%ld pixels is too large (at most %lld pixels)", w, h, (long long)IMAGE_MAX_PIXELS);
		return -1;
	}
	return 0;
}

/* ---- PNG ---- */

typedef struct {
	const unsigned char *buf;
	size_t len, pos;
	char msg[200];
	jmp_buf jb;
} PngCtx;

static void png_err_fn(png_structp png, png_const_charp msg)
{
	PngCtx *c = png_get_error_ptr(png);
	if (!c->msg[0]) snprintf(c->msg, sizeof c->msg, "bad PNG: %s", msg);
	longjmp(c->jb, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_fn(png_structp png, png_bytep out, size_t n)
{
	PngCtx *c = png_get_io_ptr(png);
	if (n > c->len - c->pos) {
		snprintf(c->msg, sizeof c->msg, "truncated PNG (the file ends inside the image data)");
		png_error(png, "truncated");
	}
	memcpy(out, c->buf + c->pos, n);
	c->pos += n;
}

static int read_png(const unsigned char *buf, size_t len, Image *im, char *err, size_t errlen)
{
	PngCtx c;
	memset(&c, 0, sizeof c);
	c.buf = buf;
	c.len = len;
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_err_fn, png_warn_fn);
	if (!png) die("out of memory");
	png_infop info = png_create_info_struct(png);
	if (!info) die("out of memory");
	png_bytep *volatile rows = NULL;
	/* volatile: changed between setjmp and a possible longjmp */
	uint8_t *volatile px = NULL;
	if (setjmp(c.jb)) {
		png_destroy_read_struct(&png, &info, NULL);
		free(rows);
		free(px);
		seterr(err, errlen, "%s", c.msg);
		return -1;
	}
	png_set_user_limits(png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
	png_set_read_fn(png, &c, png_read_fn);
	png_read_info(png, info);
	png_uint_32 w, h;
	int depth, ctype;
	png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
	if (check_size((long)h, (long)w, c.msg, sizeof c.msg) != 0) longjmp(c.jb, 1);
	if (depth == 16) png_set_strip_16(png);
	if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
	if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
	if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
	png_set_strip_alpha(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, info);
	if (png_get_rowbytes(png, info) != (size_t)w * 3) {
		snprintf(c.msg, sizeof c.msg, "bad PNG: unsupported pixel layout");
		longjmp(c.jb, 1);
	}
	px = xmallocarray((size_t)w * h, 3);
	rows = xmallocarray(h, sizeof *rows);
	for (png_uint_32 i = 0; i < h; i++) rows[i] = px + (size_t)i * w * 3;
	png_read_image(png, rows);
	png_read_end(png, NULL);
	png_destroy_read_struct(&png, &info, NULL);
	free(rows);
	im->h = (int)h;
	im->w = (int)w;
	im->px = px;
	return 0;
}

typedef struct {
	FILE *fp;
	char msg[200];
	jmp_buf jb;
} PngWCtx;

static void pngw_err_fn(png_structp png, png_const_charp msg)
{
	PngWCtx *c = png_get_error_ptr(png);
	if (!c->msg[0]) snprintf(c->msg, sizeof c->msg, "PNG write error: %s", msg);
	longjmp(c->jb, 1);
}

static void pngw_write_fn(png_structp png, png_bytep data, size_t n)
{
	PngWCtx *c = png_get_io_ptr(png);
	if (fwrite(data, 1, n, c->fp) != n) {
		snprintf(c->msg, sizeof c->msg, "write error: %s", strerror(errno));
		png_error(png, "write");
	}
}

static void pngw_flush_fn(png_structp png) { (void)png; }

int image_write_png_fp(FILE *fp, const Image *im, char *err, size_t errlen)
{
	PngWCtx c;
	memset(&c, 0, sizeof c);
	c.fp = fp;
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, pngw_err_fn, png_warn_fn);
	if (!png) die("out of memory");
	png_infop info = png_create_info_struct(png);
	if (!info) die("out of memory");
	png_bytep *volatile rows = NULL;
	if (setjmp(c.jb)) {
		png_destroy_write_struct(&png, &info);
		free(rows);
		seterr(err, errlen, "%s", c.msg);
		return -1;
	}
	png_set_write_fn(png, &c, pngw_write_fn, pngw_flush_fn);
	/* fast compression: tiles are written by the thousand */
	png_set_compression_level(png, 1);
	png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, PNG_COLOR_TYPE_RGB,
	             PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	rows = xmallocarray((size_t)im->h, sizeof *rows);
	for (int i = 0; i < im->h; i++) rows[i] = im->px + (size_t)i * im->w * 3;
	png_write_image(png, rows);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	free(rows);
	return 0;
}

void image_write_png(const char *path, const Image *im)
{
	AtomicFile af;
	char err[256];
	FILE *fp = atomic_open(&af, path);
	if (image_write_png_fp(fp, im, err, sizeof err) != 0) {
		atomic_abort(&af);
		die("%s: %s", path, err);
	}
	atomic_commit(&af);
}

/* ---- JPEG ---- */

typedef struct {
	struct jpeg_error_mgr pub;
	char msg[JMSG_LENGTH_MAX + 32];
	jmp_buf jb;
} JpegErr;

static void jpeg_error_exit_fn(j_common_ptr cinfo)
{
	JpegErr *e = (JpegErr *)cinfo->err;
	char buf[JMSG_LENGTH_MAX];
	(*cinfo->err->format_message)(cinfo, buf);
	if (!e->msg[0]) snprintf(e->msg, sizeof e->msg, "bad JPEG: %s", buf);
	longjmp(e->jb, 1);
}

/* Warnings (a premature end of data, corrupt entropy data) are errors here: a
 * truncated JPEG would otherwise decode into grey rows without a word. */
static void jpeg_emit_fn(j_common_ptr cinfo, int level)
{
	if (level < 0) jpeg_error_exit_fn(cinfo);
}

static int read_jpeg(const unsigned char *buf, size_t len, Image *im, char *err, size_t errlen)
{
	struct jpeg_decompress_struct cinfo;
	JpegErr je;
	memset(&je, 0, sizeof je);
	uint8_t *volatile px = NULL;
	cinfo.err = jpeg_std_error(&je.pub);
	je.pub.error_exit = jpeg_error_exit_fn;
	je.pub.emit_message = jpeg_emit_fn;
	if (setjmp(je.jb)) {
		jpeg_destroy_decompress(&cinfo);
		free(px);
		seterr(err, errlen, "%s", je.msg);
		return -1;
	}
	jpeg_create_decompress(&cinfo);
	jpeg_mem_src(&cinfo, buf, (unsigned long)len);
	jpeg_read_header(&cinfo, TRUE);
	if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
		snprintf(je.msg, sizeof je.msg, "CMYK JPEG is not supported");
		longjmp(je.jb, 1);
	}
	cinfo.out_color_space = JCS_RGB;
	if (check_size((long)cinfo.image_height, (long)cinfo.image_width, je.msg, sizeof je.msg) != 0) longjmp(je.jb, 1);
	jpeg_start_decompress(&cinfo);
	if (cinfo.output_components != 3) {
		snprintf(je.msg, sizeof je.msg, "bad JPEG: %d colour components", cinfo.output_components);
		longjmp(je.jb, 1);
	}
	int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
	px = xmallocarray((size_t)w * (size_t)h, 3);
	while (cinfo.output_scanline < cinfo.output_height) {
		JSAMPROW row = px + (size_t)cinfo.output_scanline * w * 3;
		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	jpeg_finish_decompress(&cinfo);
	jpeg_destroy_decompress(&cinfo);
	im->h = h;
	im->w = w;
	im->px = px;
	return 0;
}

/* ---- any ---- */

int image_sniff_stream(const unsigned char *buf, size_t len)
{
	/* a msgpack map (fixmap 0x80-0x8f, map16 0xde, map32 0xdf) whose first key is a
	 * string (fixstr 0xa0-0xbf, str8/16/32 0xd9-0xdb). A PNG starts with 0x89 'P': a
	 * fixmap whose first key would be an integer, so the two never meet. */
	if (len < 1) return 0;
	size_t k = (buf[0] & 0xf0) == 0x80 ? 1 : buf[0] == 0xde ? 3 : buf[0] == 0xdf ? 5 : 0;
	if (!k) return 0;
	if (len <= k) return 1;   /* too short to tell: let the stream reader report it */
	return (buf[k] & 0xe0) == 0xa0 || (buf[k] >= 0xd9 && buf[k] <= 0xdb);
}

int image_read_mem(const unsigned char *buf, size_t len, int fmt, Image *im, char *err, size_t errlen)
{
	static const unsigned char png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	memset(im, 0, sizeof *im);
	if (len == 0) { seterr(err, errlen, "empty file"); return -1; }
	int is_png = len >= 8 && memcmp(buf, png_sig, 8) == 0;
	int is_jpeg = len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff;
	if (fmt == IMG_AUTO) {
		if (is_png) fmt = IMG_PNG;
		else if (is_jpeg) fmt = IMG_JPEG;
		else if (len < 8 && memcmp(buf, png_sig, len) == 0) {
			seterr(err, errlen, "truncated PNG (%zu bytes)", len);
			return -1;
		} else {
			seterr(err, errlen, "not a PNG or JPEG file");
			return -1;
		}
	}
	if (fmt == IMG_PNG) {
		if (!is_png) {
			seterr(err, errlen, len < 8 && memcmp(buf, png_sig, len) == 0 ? "truncated PNG" : "not a PNG file");
			return -1;
		}
		return read_png(buf, len, im, err, errlen);
	}
	if (!is_jpeg) { seterr(err, errlen, "not a JPEG file"); return -1; }
	return read_jpeg(buf, len, im, err, errlen);
}

int image_read(const char *path, int fmt, Image *im, char *err, size_t errlen)
{
	memset(im, 0, sizeof *im);
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!fp) { seterr(err, errlen, "cannot open: %s", strerror(errno)); return -1; }
	size_t cap = 1 << 16, len = 0;
	unsigned char *buf = xmalloc(cap);
	for (;;) {
		if (len == cap) {
			if (cap >= IMAGE_MAX_FILE) {
				if (fp != stdin) fclose(fp);
				free(buf);
				seterr(err, errlen, "file larger than %zu bytes", IMAGE_MAX_FILE);
				return -1;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		size_t got = fread(buf + len, 1, cap - len, fp);
		len += got;
		if (got == 0) break;
	}
	int bad = ferror(fp);
	int e = errno;
	if (fp != stdin) fclose(fp);
	if (bad) {
		free(buf);
		seterr(err, errlen, "read error: %s", strerror(e));
		return -1;
	}
	int rc = image_read_mem(buf, len, fmt, im, err, errlen);
	free(buf);
	return rc;
}

/* ---- image streams ---- */

static void pack_tile(Header *h, int th, int tw)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str(&pk, 1); msgpack_pack_str_body(&pk, "h", 1); msgpack_pack_int64(&pk, th);
	msgpack_pack_str(&pk, 1); msgpack_pack_str_body(&pk, "w", 1); msgpack_pack_int64(&pk, tw);
	Blob b = { sb.data, sb.size };
	header_set(h, "tile", &b);
	msgpack_sbuffer_destroy(&sb);
}

void imgout_start(ImgOut *o, FILE *fp, const char *name, const Header *h, int th, int tw)
{
	memset(o, 0, sizeof *o);
	ASSERT(th > 0 && tw > 0);
	sw_init(&o->w, fp, name);
	o->th = th;
	o->tw = tw;
	o->max_bytes = (size_t)32 << 20;
	Header hh;
	header_copy(&hh, h);
	free(hh.kind);
	hh.kind = xstrdup("images");
	pack_tile(&hh, th, tw);
	sw_header(&o->w, &hh);
	header_free(&hh);
}

void imgout_flush(ImgOut *o)
{
	if (o->n == 0) return;
	int64_t shx[4] = { o->n, o->th, o->tw, 3 }, sh1[1] = { o->n };
	sw_map(&o->w, 5);
	sw_key(&o->w, "type"); sw_str(&o->w, "images");
	sw_key(&o->w, "ids"); sw_strs(&o->w, o->ids, o->n);
	sw_key(&o->w, "x"); sw_tensor(&o->w, DT_U8, 4, shx, o->x);
	sw_key(&o->w, "y"); sw_tensor(&o->w, DT_I32, 1, sh1, o->y);
	sw_key(&o->w, "d"); sw_tensor(&o->w, DT_I32, 1, sh1, o->d);
	o->w.frames++;
	o->frames++;
	for (int i = 0; i < o->n; i++) free(o->ids[i]);
	o->n = 0;
	sw_flush(&o->w);
}

void imgout_push(ImgOut *o, const char *id, const uint8_t *px, int32_t y, int32_t d)
{
	size_t isz = (size_t)o->th * o->tw * 3;
	if (o->n == o->cap) {
		int cap = o->cap ? o->cap * 2 : 16;
		o->ids = xrealloc(o->ids, sizeof(char *) * (size_t)cap);
		o->x = xrealloc(o->x, isz * (size_t)cap);
		o->y = xrealloc(o->y, sizeof(int32_t) * (size_t)cap);
		o->d = xrealloc(o->d, sizeof(int32_t) * (size_t)cap);
		o->cap = cap;
	}
	o->ids[o->n] = xstrdup(id);
	memcpy(o->x + isz * (size_t)o->n, px, isz);
	o->y[o->n] = y;
	o->d[o->n] = d;
	o->n++;
	o->rows++;
	if ((size_t)o->n * isz >= o->max_bytes || o->n >= 4096) imgout_flush(o);
}

void imgout_finish(ImgOut *o)
{
	imgout_flush(o);
	sw_end(&o->w, o->rows, o->frames);
	sw_flush(&o->w);
	free(o->ids); free(o->x); free(o->y); free(o->d);
	o->ids = NULL; o->x = NULL; o->y = o->d = NULL;
	o->cap = 0;
}

void imgblock_free(ImgBlock *b)
{
	for (int i = 0; i < b->n; i++) free(b->ids[i]);
	free(b->ids); free(b->x); free(b->y); free(b->d);
	memset(b, 0, sizeof *b);
}

void imgin_open(ImgIn *in, const char *path)
{
	memset(in, 0, sizeof *in);
	sr_open(&in->r, path);
	const msgpack_object *f = sr_next(&in->r);
	if (!f) sr_fail(&in->r, "empty stream (no header frame)");
	header_parse(&in->r, f, &in->h);
	if (strcmp(in->h.kind, "images") != 0)
		sr_fail(&in->r, "header kind is \"%s\", expected \"images\"", in->h.kind);
	const msgpack_object *t = obj_get(f, "tile");
	if (!t || t->type != MSGPACK_OBJECT_MAP) sr_fail(&in->r, "header has no \"tile\" map {h, w}");
	int64_t th = get_int(&in->r, t, "h"), tw = get_int(&in->r, t, "w");
	if (th <= 0 || tw <= 0 || th > IMAGE_MAX_SIDE || tw > IMAGE_MAX_SIDE || th * tw > IMAGE_MAX_PIXELS)
		sr_fail(&in->r, "tile %lldx%lld is not a valid image size", (long long)tw, (long long)th);
	in->th = (int)th;
	in->tw = (int)tw;
}

int imgin_next(ImgIn *in, ImgBlock *b)
{
	if (in->done) return 0;
	{
		const msgpack_object *f = stream_next_of(&in->r, "images", in->rows, &in->done);
		if (!f) return 0;
		Tensor x, y, d;
		char **ids;
		int n = get_strs(&in->r, f, "ids", &ids);
		get_tensor(&in->r, f, "x", DT_U8, 4, &x);
		get_tensor(&in->r, f, "y", DT_I32, 1, &y);
		get_tensor(&in->r, f, "d", DT_I32, 1, &d);
		if (x.shape[0] != n || y.shape[0] != n || d.shape[0] != n)
			sr_fail(&in->r, "ids, x, y and d disagree on the number of images");
		if (x.shape[1] != in->th || x.shape[2] != in->tw || x.shape[3] != 3)
			sr_fail(&in->r, "x has shape (%lld,%lld,%lld,%lld), the header's tile is (%d,%d,3)",
			        (long long)x.shape[0], (long long)x.shape[1], (long long)x.shape[2], (long long)x.shape[3], in->th, in->tw);
		const int32_t *yy = y.data, *dd = d.data;
		for (int i = 0; i < n; i++) {
			if (yy[i] < -1 || yy[i] >= in->h.nclass) sr_fail(&in->r, "image %d (%s): label %d is not a class of the header", i, ids[i], yy[i]);
			if (dd[i] < 0 || dd[i] >= in->h.ndom) sr_fail(&in->r, "image %d (%s): domain %d is not a domain of the header", i, ids[i], dd[i]);
		}
		imgblock_free(b);
		b->n = n;
		b->th = in->th;
		b->tw = in->tw;
		b->ids = ids;
		b->x = x.data;
		b->y = y.data;
		b->d = d.data;
		in->rows += n;
		in->frames++;
		return 1;
	}
}

void imgin_close(ImgIn *in)
{
	header_free(&in->h);
	sr_close(&in->r);
}
