/* fuzz_image.c: PNG and JPEG decoding (common/image.c, image_read_mem) over
 * arbitrary bytes.
 *
 * Byte 0 chooses the format the caller asks for (auto by magic bytes, PNG, JPEG);
 * the rest is the file. A decoded image is written again with image_write_png_fp
 * and read back: the pixels must be the same.
 * Properties: no crash or sanitizer report; image_read_mem never dies: it returns 0
 * with an image of 1 to IMAGE_MAX_PIXELS pixels, sides at most IMAGE_MAX_SIDE, or -1
 * with a reason in err; either way nothing allocated through the project is left
 * behind (libpng and libjpeg allocate outside fuzz.h's tracking; LeakSanitizer sees
 * theirs); the PNG round trip is exact. */
#include "fuzz.h"
#include "image.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

static void check(const Image *im)
{
	if (im->h < 1 || im->w < 1 || im->h > IMAGE_MAX_SIDE || im->w > IMAGE_MAX_SIDE) abort();
	if ((int64_t)im->h * im->w > IMAGE_MAX_PIXELS || !im->px) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) return 0;
	static const int fmts[3] = { IMG_AUTO, IMG_PNG, IMG_JPEG };
	int fmt = fmts[data[0] % 3];
	char err[256];
	err[0] = 0;
	Image im;
	fuzz_begin();
	int died, rc = 0;
	FUZZ_TRY(died, rc = image_read_mem(data + 1, size - 1, fmt, &im, err, sizeof err));
	if (died) abort();  /* the readers return -1, they never die */
	if (rc != 0) {
		if (rc != -1 || !err[0] || im.px) abort();
		fuzz_end();
		return 0;
	}
	check(&im);
	/* round trip through the PNG writer */
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	if (!fp) abort();
	if (image_write_png_fp(fp, &im, err, sizeof err) != 0) abort();
	fclose(fp);
	Image back;
	if (image_read_mem((const unsigned char *)buf, len, IMG_PNG, &back, err, sizeof err) != 0) abort();
	if (back.h != im.h || back.w != im.w || memcmp(back.px, im.px, (size_t)im.h * im.w * 3) != 0) abort();
	image_free(&back);
	image_free(&im);
	fuzz_end();
	free(buf);
	return 0;
}
